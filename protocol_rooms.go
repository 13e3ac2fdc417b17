package realtime

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// Room commands: join, leave and presence, and the events they send.

func (h *Handler) join(c *conn, room string, data json.RawMessage) {
	if !ValidRoomName(room) {
		h.sendError(c, ErrCodeBadRoom, badRoomMessage)
		return
	}
	since, ok := parseSince(data)
	if !ok {
		h.sendError(c, ErrCodeBadData, `join data must be {"since":{"offset":N,"epoch":"E"}}`)
		return
	}
	if owner, personal := roomOwner(room); personal && (owner != c.UserID() || c.UserID() == "") {
		h.sendError(c, ErrCodeForbidden, "only its user may join "+strconv.Quote(room))
		return
	}
	if err := h.authorizeJoin(c, room); err != nil {
		h.sendError(c, ErrCodeForbidden, "not allowed to join "+strconv.Quote(room))
		return
	}
	if h.hist == nil {
		h.joinPlain(c, room)
		return
	}
	admit := func(v historyView) { h.admitMember(c, room, since, v) }
	if h.hist.join(room, since, admit) {
		return
	}
	if rooms := h.rooms.Rooms(c); !slices.Contains(rooms, room) && len(rooms) >= h.cfg.MaxRoomsPerConn {
		h.sendError(c, ErrCodeTooManyRooms, fmt.Sprintf("at most %d rooms per connection", h.cfg.MaxRoomsPerConn))
		return // before Redis is asked anything for it
	}
	// The join waits for Redis: a leave meanwhile cancels it.
	p := h.pending.add(c, room)
	h.hist.joinLater(room, since, func(v historyView) {
		if h.pending.done(c, room, p) {
			admit(v)
		}
	}, func() {
		if h.pending.done(c, room, p) {
			h.sendErrorIn(c, room, ErrCodeUnavailable, "the room's history cannot be read now; join again")
		}
	})
}

// pendingJoins are joins waiting for Redis, by connection and room, so that
// a leave (or a teardown) cancels them. All methods may be called
// concurrently.
type pendingJoins struct {
	mu sync.Mutex
	m  map[pendingKey]*pendingJoinState
}

type pendingKey struct {
	c    *conn
	room string
}

type pendingJoinState struct{ cancelled bool }

// add records a join of room by c in progress (the latest one counts).
func (p *pendingJoins) add(c *conn, room string) *pendingJoinState {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[pendingKey]*pendingJoinState{}
	}
	if old := p.m[pendingKey{c, room}]; old != nil {
		old.cancelled = true // two joins in flight: the later one answers
	}
	st := &pendingJoinState{}
	p.m[pendingKey{c, room}] = st
	return st
}

// done ends join st and reports whether it may still proceed.
func (p *pendingJoins) done(c *conn, room string, st *pendingJoinState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[pendingKey{c, room}] == st {
		delete(p.m, pendingKey{c, room})
	}
	return !st.cancelled && c.state.Load() != stateClosed
}

// cancel cancels c's join of room in progress and reports whether there was
// one.
func (p *pendingJoins) cancel(c *conn, room string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.m[pendingKey{c, room}]
	if st == nil {
		return false
	}
	st.cancelled = true
	delete(p.m, pendingKey{c, room})
	return true
}

// addMember adds c to room, unless c was torn down meanwhile (a hook ran
// first), and records the membership for presence.
func (h *Handler) addMember(c *conn, room string) (joined bool, err error) {
	mu := h.memberLock(c)
	mu.Lock()
	defer mu.Unlock()
	if c.state.Load() == stateClosed { // torn down while the hook ran
		return false, errConnClosed
	}
	joined, err = h.rooms.Join(c, room, h.cfg.MaxRoomsPerConn)
	if joined {
		h.recordMember(room, c, +1)
	}
	switch {
	case errors.Is(err, ErrTooManyRooms):
		h.sendError(c, ErrCodeTooManyRooms, fmt.Sprintf("at most %d rooms per connection", h.cfg.MaxRoomsPerConn))
	case err != nil: // not registered: the connection is going away
	}
	return joined, err
}

// joinPlain joins a room without history: the join event, which the joiner
// gets too, is its acknowledgement.
func (h *Handler) joinPlain(c *conn, room string) {
	defer h.eng.batches.lockRoom(room)() // no batched event before the acknowledgement
	joined, err := h.addMember(c, room)
	if err != nil {
		return
	}
	announce := joined && h.announce(room, MessageTypeJoin)
	if !h.batching() {
		msg := h.eventMessage(c, MessageTypeJoin, room)
		if announce {
			h.deliver(c, msg) // c is a member: this is its acknowledgement too
			return
		}
		c.Send(msg)
		return
	}
	f := h.newEventFrame(c, MessageTypeJoin, room)
	if announce {
		h.batchEvent(c, MessageTypeJoin, f) // to the others, with the window's events
	}
	c.SendFrame(f)
}

// admitMember joins c to a room that keeps history. It runs under the room's
// history lock, so no message of the room is delivered meanwhile: the
// acknowledgement gives the room's position, the replay (with since)
// follows it, and every later message comes after both. The other members'
// join event goes out before c is a member, so that c gets one join
// message, its acknowledgement.
func (h *Handler) admitMember(c *conn, room string, since *Position, v historyView) {
	if rooms := h.rooms.Rooms(c); !slices.Contains(rooms, room) {
		if len(rooms) >= h.cfg.MaxRoomsPerConn {
			h.sendError(c, ErrCodeTooManyRooms, fmt.Sprintf("at most %d rooms per connection", h.cfg.MaxRoomsPerConn))
			return
		}
		if h.announceAt(room, MessageTypeJoin, 1) {
			h.deliverEvent(c, MessageTypeJoin, room)
		}
	}
	unlock := h.eng.batches.lockRoom(room) // no batched event before the acknowledgement
	defer unlock()
	if _, err := h.addMember(c, room); err != nil {
		return
	}
	ack := JoinAckData{Room: room, UserID: c.UserID(), Offset: v.Pos.Offset, Epoch: v.Pos.Epoch}
	if since != nil {
		ack.Recovered = &v.Recovered
		if v.Recovered {
			h.stats.recovered.Add(1)
		} else {
			h.stats.notRecovered.Add(1)
		}
	}
	c.enqueue(joinAckFrame(h.cfg.PodID, &ack, time.Now().UTC()))
	for _, f := range v.Replay {
		c.SendFrame(f)
	}
	h.stats.replayed.Add(uint64(len(v.Replay)))
}

func (h *Handler) leave(c *conn, room string) {
	if !ValidRoomName(room) {
		h.sendError(c, ErrCodeBadRoom, badRoomMessage)
		return
	}
	if !h.rooms.Leave(c, room) {
		if h.pending.cancel(c, room) { // a join still waiting for Redis
			c.Send(h.eventMessage(c, MessageTypeLeave, room))
			return
		}
		h.sendError(c, ErrCodeNotInRoom, "not in room "+strconv.Quote(room))
		return
	}
	h.recordMember(room, c, -1)
	// The leaver is no longer a member: it gets its acknowledgement itself.
	if !h.batching() {
		msg := h.eventMessage(c, MessageTypeLeave, room)
		c.Send(msg)
		if h.announce(room, MessageTypeLeave) {
			h.deliver(c, msg)
		}
		return
	}
	f := h.newEventFrame(c, MessageTypeLeave, room)
	c.SendFrame(f)
	if h.announce(room, MessageTypeLeave) {
		h.batchEvent(c, MessageTypeLeave, f)
	}
}

func (h *Handler) eventMessage(c *conn, typ, room string) *Message {
	data, _ := json.Marshal(JoinLeaveData{Room: room, UserID: c.UserID()})
	return &Message{ID: newMessageID(h.cfg.PodID), Type: typ, Room: room, From: "system", Data: data, Timestamp: time.Now().UTC()}
}

// presenceEvent tells room that c's user has status.
func (h *Handler) presenceEvent(c *conn, room, status string) {
	data, _ := json.Marshal(PresenceData{Status: status, UserID: c.UserID()})
	h.eng.batches.flushRoom(room) // after c's join event
	h.deliver(c, &Message{ID: newMessageID(h.cfg.PodID), Type: MessageTypePresence, Room: room, From: c.id, UserID: c.UserID(), Data: data, Timestamp: time.Now().UTC()})
}

func (h *Handler) setPresence(c *conn, data json.RawMessage) {
	var p struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(data, &p) != nil {
		h.sendError(c, ErrCodeBadData, `presence data must be {"status":"online"|"away"|"offline"}`)
		return
	}
	if !validStatus(p.Status) {
		h.sendError(c, ErrCodeBadData, `presence status must be "online", "away" or "offline"`)
		return
	}
	if u := c.UserID(); u != "" {
		h.users.setStatus(u, p.Status)
		if h.tracker != nil {
			h.tracker.TrackStatus(u, p.Status)
		}
	}
	for _, room := range h.rooms.Rooms(c) {
		h.presenceEvent(c, room, p.Status)
	}
}

func (h *Handler) isMember(c *conn, room string) bool {
	for _, r := range h.rooms.Rooms(c) {
		if r == room {
			return true
		}
	}
	return false
}

// rosterQueries bounds the roster queries that wait on the Broadcaster at
// once; past it a query is answered "unavailable".
const rosterQueries = 64

// members answers a member's roster query: the room's users on every pod
// when the Broadcaster knows them (asked off the socket worker, within
// PublishTimeout), else this pod's.
func (h *Handler) members(c *conn, room string) {
	if !ValidRoomName(room) {
		h.sendError(c, ErrCodeBadRoom, badRoomMessage)
		return
	}
	if !h.isMember(c, room) {
		h.sendError(c, ErrCodeNotInRoom, "join "+strconv.Quote(room)+" before asking who is in it")
		return
	}
	_, tracker := h.cfg.Broadcaster.(PresenceTracker)
	_, roster := h.cfg.Broadcaster.(Roster)
	if !tracker && !roster {
		h.sendMembers(c, room, h.localMembers(room))
		return
	}
	select {
	case h.rosterSem <- struct{}{}:
	default:
		h.sendError(c, ErrCodeUnavailable, "too many roster queries at once; try again")
		return
	}
	go func() {
		defer func() { <-h.rosterSem }()
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PublishTimeout)
		defer cancel()
		ms, err := h.RoomMembers(ctx, room)
		if err != nil {
			h.logger.Warn("realtime: roster", "room", room, "err", err)
			h.sendErrorIn(c, room, ErrCodeUnavailable, "the roster could not be read; try again")
			return
		}
		h.sendMembers(c, room, ms)
	}()
}

func (h *Handler) sendMembers(c *conn, room string, ms []MemberInfo) {
	slices.SortFunc(ms, func(a, b MemberInfo) int { return cmp.Compare(a.UserID, b.UserID) })
	d := MembersData{Count: len(ms), Users: make([]string, len(ms)), Members: append([]MemberInfo{}, ms...)}
	for i, m := range ms {
		d.Users[i] = m.UserID
	}
	data, _ := json.Marshal(d)
	c.Send(&Message{ID: newMessageID(h.cfg.PodID), Type: MessageTypeMembers, Room: room, From: "system", Data: data, Timestamp: time.Now().UTC()})
}

// memberLocks serializes a connection's joins with its detach: a join that
// runs on the command pool (a hook waited) must either land before detach
// lists the connection's rooms, or see it closed; else the room would keep
// a member that is gone. Striped, so it costs a connection nothing.
type memberLocks [64]sync.Mutex

// memberLock returns c's stripe of the handler's member locks.
func (h *Handler) memberLock(c *conn) *sync.Mutex {
	return &h.memberMu[uintptr(unsafe.Pointer(c))>>4%uintptr(len(h.memberMu))]
}
