package realtime

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/realtimehub/realtime/history"
)

// Room history: every message a room keeps gets an offset in the room (+1
// per message, no gaps) and the room's epoch, which changes when the room's
// history was lost. A client that rejoins with the position of the last
// message it got ({"type":"join","room":R,"data":{"since":{"offset":N,
// "epoch":E}}}) is sent, after its acknowledgement, every message after N,
// once and in order, before any newer one; or is told recovered:false when
// that is no longer possible (the epoch changed, or N is older than what the
// room keeps) and should reload its state from the application.
//
// Rooms keep the messages clients and server code publish to them (chat and
// any application type). Join, leave, presence and members_diff events are
// not kept and carry no offset, nor do direct messages to a connection.
// On a single pod the Handler keeps history in memory (HandlerConfig
// History*); with a RedisBroadcaster it is kept in Redis streams and the
// broadcaster's options rule (WithHistory).

// Position is a place in a room's history: the offset of a message and the
// epoch it counts in.
type Position = history.Position

// historyView is what a joiner is told: the room's position and, with since,
// the messages after it.
type historyView = history.View[*Frame]

// JoinAckData is the data of the join acknowledgement in a room that keeps
// history: the joiner's room and user, the room's current position, and,
// when the join asked to recover from a position, whether it did (then every
// message after that position follows). It is a plain value.
type JoinAckData struct {
	Room      string `json:"room"`
	UserID    string `json:"user_id"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered,omitempty"`
}

// joinData is the data a client may send with a join.
type joinData struct {
	Since *Position `json:"since"`
}

// UserRoomPrefix starts a user's personal room: "~" + user ID. Only that
// user may join it; messages published to it reach every connection of the
// user that joined it, on every pod, and are kept in its history like any
// room's, so a device that reconnects recovers its missed direct messages.
const UserRoomPrefix = "~"

// UserRoom returns user's personal room.
func UserRoom(user string) string { return UserRoomPrefix + user }

// roomOwner returns the user whose personal room room is, or "".
func roomOwner(room string) (string, bool) {
	return strings.CutPrefix(room, UserRoomPrefix)
}

// keepsHistory reports whether msg enters its room's history (where there
// is one): a message to a room that is not an event. Such a message is
// delivered, on every pod, only once it has its place.
func keepsHistory(msg *Message) bool {
	if msg.Room == "" || msg.To != "" {
		return false
	}
	switch msg.Type {
	case MessageTypeJoin, MessageTypeLeave, MessageTypePresence, MessageTypeMembersDiff, MessageTypeMembers,
		MessageTypeError, MessageTypePing, MessageTypePong:
		return false
	}
	return true
}

// historian keeps a Handler's room history: the handler's own in memory
// (one pod), or the RedisBroadcaster's. Its methods may be called
// concurrently.
type historian interface {
	// join runs fn under room's lock with what a joiner with since is told,
	// if that is known here; see history.Log.Join.
	join(room string, since *Position, fn func(historyView)) bool
	// joinLater finds it out (reading Redis, off the caller's goroutine,
	// waiting while Redis is away) and then runs fn the same way; if it
	// cannot within joinWait, it runs fail instead.
	joinLater(room string, since *Position, fn func(historyView), fail func())
}

// memHistory is the history of a single pod: a leader log in memory.
type memHistory struct {
	log       *history.Log[*Frame]
	lastSweep atomic.Int64
}

func newMemHistory(h *Handler) *memHistory {
	o := history.Options{Size: h.cfg.HistorySize, TTL: h.cfg.HistoryTTL, MaxBytes: h.cfg.HistoryMaxBytes}
	m := &memHistory{log: history.NewLeader(o, h.deliverLocal)}
	m.lastSweep.Store(time.Now().UnixNano())
	return m
}

func (m *memHistory) join(room string, since *Position, fn func(historyView)) bool {
	return m.log.Join(room, since, fn)
}

func (m *memHistory) joinLater(room string, since *Position, fn func(historyView), _ func()) {
	m.log.Join(room, since, fn) // a leader always answers
}

// append encodes msg, gives it its room's next position, keeps it and
// delivers it to the room, in offset order. The JSON is encoded before the
// room's lock is taken; under it the position is only spliced in. A message
// that does not encode (ErrEncode) takes no position.
func (m *memHistory) append(msg *Message) error {
	msg.Offset, msg.Epoch = 0, "" // a Message published again gets its place anew
	f, err := NewFrame(msg)
	if err != nil {
		return err
	}
	pos := m.log.Append(msg.Room, func(pos Position) (*Frame, int) {
		p := positionedFrame(f, msg.Room, pos.Offset, pos.Epoch)
		return p, len(p.wire)
	})
	msg.Offset, msg.Epoch = pos.Offset, pos.Epoch // for the caller (Handler.Publish)
	m.sweepSometimes()
	return nil
}

// sweepSometimes drops expired messages and forgotten rooms every 10 s, on a
// goroutine of its own.
func (m *memHistory) sweepSometimes() {
	last := m.lastSweep.Load()
	now := time.Now()
	if now.UnixNano()-last < int64(10*time.Second) || !m.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	go m.log.Sweep(now)
}

// parseSince reads a join's data: nil without since.
func parseSince(data json.RawMessage) (*Position, bool) {
	if len(data) == 0 || string(data) == "null" {
		return nil, true
	}
	var d joinData
	if json.Unmarshal(data, &d) != nil {
		return nil, false
	}
	return d.Since, true
}

// historyTimeout bounds a read of a room's history from Redis.
const historyTimeout = 5 * time.Second
