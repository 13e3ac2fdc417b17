package realtime

import (
	"encoding/json"
	"sync"
	"time"
)

// MessageTypeMembersDiff is the event a big room gets instead of one join
// or leave event per member: once per JoinEventsWindow, how many joined and
// left it in that window (MembersDiffData). MessageTypeMembers is a client's
// query for a room's roster, and the answer (MembersData).
const (
	MessageTypeMembersDiff = "members_diff"
	MessageTypeMembers     = "members"
)

// MembersDiffData is the data of a members_diff event: how many connections
// joined and left the room on the pod that sent it, in one window. It is a
// plain value.
type MembersDiffData struct {
	Joined int `json:"joined"`
	Left   int `json:"left"`
}

// MembersData answers a members query: the room's users (distinct user IDs,
// anonymous connections not listed) and their count. It is a plain value.
type MembersData struct {
	Count int      `json:"count"`
	Users []string `json:"users"`
	// Members has each user's connections in the room (on every pod with a
	// PresenceTracker) and status ("online", or what the user set), in
	// Users' order.
	Members []MemberInfo `json:"members"`
}

// MemberInfo is one user of a room's roster. It is a plain value.
type MemberInfo struct {
	UserID string `json:"user_id"`
	// Connections is how many of the user's connections are in the room
	// (on every pod with a PresenceTracker; with a Broadcaster that is only
	// a Roster, which knows users and not connections, 1).
	Connections int `json:"connections"`
	// Status is "online", or what a client of the user set ("away").
	Status string `json:"status,omitempty"`
}

// roomEvents coalesces the join and leave events of big rooms: a room with
// more than JoinEventsMaxMembers members on this pod gets, instead of an
// event per member (which makes a reconnect storm cost joins × members), one
// members_diff per JoinEventsWindow, or per several windows for a room of
// more than MembersDiffMaxFrames members. All methods may be called
// concurrently.
type roomEvents struct {
	h     *Handler
	mu    sync.Mutex
	diffs map[string]*pendingDiff
	stop  chan struct{}
	wg    sync.WaitGroup
}

// pendingDiff is a room's members_diff being counted, how many windows it
// has waited, and how many it waits: set when its first window ends, from
// the room's size then (a room that grows by more than MembersDiffMaxFrames
// a window would otherwise never have waited long enough).
type pendingDiff struct {
	MembersDiffData
	windows, wait int
}

func newRoomEvents(h *Handler) *roomEvents {
	e := &roomEvents{h: h, diffs: map[string]*pendingDiff{}, stop: make(chan struct{})}
	e.wg.Go(e.run)
	return e
}

// add counts one join or leave in room for its next members_diff.
func (e *roomEvents) add(room, typ string) {
	e.mu.Lock()
	d := e.diffs[room]
	if d == nil {
		d = &pendingDiff{}
		e.diffs[room] = d
	}
	if typ == MessageTypeJoin {
		d.Joined++
	} else {
		d.Left++
	}
	e.mu.Unlock()
}

func (e *roomEvents) run() {
	t := time.NewTicker(e.h.cfg.JoinEventsWindow)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.flush(false)
		}
	}
}

// windowsPerDiff is how many windows a room of n members on this pod waits
// between its members_diffs: enough that each window costs at most about
// MembersDiffMaxFrames frames.
func (h *Handler) windowsPerDiff(n int) int {
	m := h.cfg.MembersDiffMaxFrames
	if m <= 0 || n <= m {
		return 1
	}
	return (n + m - 1) / m
}

// flush ends a window: each room with changes that has waited its windows
// (every one if all) gets its members_diff; the others wait another.
func (e *roomEvents) flush(all bool) {
	e.mu.Lock()
	diffs := e.diffs
	if len(diffs) == 0 {
		e.mu.Unlock()
		return // diffs is still e.diffs: not to be read outside the lock
	}
	e.diffs = map[string]*pendingDiff{}
	e.mu.Unlock()
	var waiting map[string]*pendingDiff
	for room, d := range diffs {
		if d.windows++; d.wait == 0 {
			d.wait = e.h.windowsPerDiff(e.h.hub.RoomCount(room))
		}
		if !all && d.windows < d.wait {
			if waiting == nil {
				waiting = map[string]*pendingDiff{}
			}
			waiting[room] = d
			continue
		}
		data, _ := json.Marshal(d.MembersDiffData)
		e.h.deliver(nil, &Message{ID: newMessageID(e.h.cfg.PodID), Type: MessageTypeMembersDiff, Room: room,
			From: "system", Data: data, Timestamp: time.Now().UTC()})
	}
	if len(waiting) == 0 {
		return
	}
	e.mu.Lock()
	for room, d := range waiting { // with what was counted meanwhile
		if since := e.diffs[room]; since != nil {
			d.Joined += since.Joined
			d.Left += since.Left
		}
		e.diffs[room] = d
	}
	e.mu.Unlock()
}

// close stops the ticker and sends what is pending.
func (e *roomEvents) close() {
	close(e.stop)
	e.wg.Wait()
	e.flush(true)
}

// announce decides how room hears that a member joined or left: true for a
// single event now (a small room, as clients have always had), false when
// events are off or the room is big (the change is then counted in the
// room's next members_diff). The room's size is its member count on this pod.
func (h *Handler) announce(room, typ string) bool { return h.announceAt(room, typ, 0) }

// announceAt is announce for a room that will have extra more members than
// it has now (a joiner announced before it is a member counts itself in).
func (h *Handler) announceAt(room, typ string, extra int) bool {
	if h.cfg.DisableJoinLeaveEvents {
		return false
	}
	if h.hub.RoomCount(room)+extra <= h.cfg.JoinEventsMaxMembers {
		return true
	}
	h.eng.events.add(room, typ)
	return false
}
