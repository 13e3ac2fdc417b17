package realtime

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// A small room's join and leave events go to the other pods at once, but to
// this pod's members together: each room's events of a JoinEventsDelay
// window are queued to each member (but the one each is about) under one
// lock, and leave in one write. A reconnect storm into small rooms then
// costs members × windows writes, not members × joins: the frames are the
// same single join and leave events clients always had.

// pendingEvent is a join or leave event waiting for its room's window: from
// is the connection it is about, which does not get it (a joiner has its
// acknowledgement), nor the events before its join.
type pendingEvent struct {
	from *conn
	f    *Frame
	join bool
}

// eventBatches holds the small rooms' events of the current window.
// All methods may be called concurrently.
type eventBatches struct {
	h       *Handler
	hub     *ShardedHub
	delay   time.Duration
	mu      sync.Mutex
	rooms   map[string][]pendingEvent
	pending atomic.Int32 // len(rooms): a cheap check for flushRoom
	armed   bool         // a flush is due (its timer runs)
	closed  bool

	// stripes keep a room's batch from reaching a joiner between its
	// becoming a member and its acknowledgement (lockRoom).
	stripes [64]sync.Mutex
}

// newEventBatches returns the batcher of h's small rooms' events, or nil
// where they cannot wait for a window (each then goes out at once): events
// off or JoinEventsDelay negative; a hub that cannot hand a member a batch
// (not a ShardedHub); a Broadcaster that delivers to its own pod (not a
// Relayer), so that this pod does not deliver its own events. Call it once
// the pipeline exists.
func newEventBatches(h *Handler) *eventBatches {
	hub, ok := h.frames.(*ShardedHub)
	if !ok || h.cfg.DisableJoinLeaveEvents || h.cfg.JoinEventsDelay < 0 ||
		h.cfg.Broadcaster != nil && h.eng.pipe.relayer == nil {
		return nil
	}
	return &eventBatches{h: h, hub: hub, delay: h.cfg.JoinEventsDelay, rooms: map[string][]pendingEvent{}}
}

// batching reports whether small rooms' events wait for their window.
func (h *Handler) batching() bool { return h.eng.batches != nil }

// deliverEvent sends a small room's join or leave event about c: to the
// other pods now, and to this pod's members but c with the room's other
// events of the window. Where it cannot wait it is delivered at once, to
// every member (deliver).
func (h *Handler) deliverEvent(c *conn, typ, room string) {
	if !h.batching() {
		h.deliver(c, h.eventMessage(c, typ, room))
		return
	}
	h.batchEvent(c, typ, h.newEventFrame(c, typ, room))
}

// newEventFrame is c's join or leave event (typ) of room as a frame: built
// straight on a single pod; with a Broadcaster from its Message, which the
// relay to the other pods reads (a frame built straight would be decoded
// again there).
func (h *Handler) newEventFrame(c *conn, typ, room string) *Frame {
	if h.cfg.Broadcaster != nil {
		if f, err := NewFrame(h.eventMessage(c, typ, room)); err == nil {
			return f
		}
	}
	return eventFrame(h.cfg.PodID, typ, room, c.UserID(), time.Now().UTC())
}

// batchEvent sends f, c's event of type typ, to the other pods at once and
// to the room's members here with its window.
func (h *Handler) batchEvent(c *conn, typ string, f *Frame) {
	if h.cfg.Broadcaster != nil && !h.eng.pipe.submit(f.room, pubJob{f: f, from: c}, nil) {
		h.publishFailed(c, f.Message(), errPipelineFull)
	}
	h.eng.batches.add(f.room, pendingEvent{from: c, f: f, join: typ == MessageTypeJoin})
}

// add queues ev for its room's window. A window starts with the first event
// after the last flush: one timer per window, for every room then waiting.
func (b *eventBatches) add(room string, ev pendingEvent) {
	b.mu.Lock()
	if b.closed { // shutting down: at once (a joiner may hold the room's stripe)
		b.mu.Unlock()
		b.deliver(room, []pendingEvent{ev})
		return
	}
	list, ok := b.rooms[room]
	b.rooms[room] = append(list, ev)
	if !ok {
		b.pending.Add(1)
	}
	if !b.armed {
		b.armed = true
		time.AfterFunc(b.delay, b.flush)
	}
	b.mu.Unlock()
}

// flush sends every room's waiting events. Nil-safe.
func (b *eventBatches) flush() {
	if b == nil {
		return
	}
	b.mu.Lock()
	rooms := make([]string, 0, len(b.rooms))
	for room := range b.rooms {
		rooms = append(rooms, room)
	}
	b.armed = false
	b.mu.Unlock()
	for _, room := range rooms {
		b.flushRoom(room)
	}
}

// flushRoom sends room's waiting events now (a member's message to the room
// comes after its own join event). It takes them under the room's stripe:
// a joiner that becomes a member meanwhile either has its join in them, and
// hears only what follows it, or joins after they went out.
func (b *eventBatches) flushRoom(room string) {
	if b == nil || b.pending.Load() == 0 {
		return
	}
	defer b.lockRoom(room)()
	b.mu.Lock()
	batch, ok := b.rooms[room]
	if ok {
		delete(b.rooms, room)
		b.pending.Add(-1)
	}
	b.mu.Unlock()
	if ok {
		b.deliver(room, batch)
	}
}

// lockRoom holds room's sending of batches off until the returned func is
// called: a joiner becomes a member and queues its acknowledgement under it,
// so that no other member's event reaches it first. Nil-safe.
func (b *eventBatches) lockRoom(room string) (unlock func()) {
	if b == nil {
		return func() {}
	}
	mu := &b.stripes[xxhash.Sum64String(room)%uint64(len(b.stripes))]
	mu.Lock()
	return mu.Unlock
}

// close sends what is waiting; later events go out at once. Nil-safe.
func (b *eventBatches) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.flush()
}

// deliver hands batch to each member of room but the one each event is
// about (the caller holds the room's stripe, or the handler is closing).
func (b *eventBatches) deliver(room string, batch []pendingEvent) {
	b.hub.broadcastEvents(room, batch)
}

// broadcastEvents queues batch to each member of room, for one write each,
// skipping a member's own events.
func (h *ShardedHub) broadcastEvents(room string, batch []pendingEvent) {
	start := time.Now()
	c := h.reg.EachInRoom(room, h.workers, func(fs FrameSender) bool {
		if c, ok := fs.(*conn); ok {
			return c.enqueueEvents(batch)
		}
		ok := true // a Connection of another kind: not one the events are about
		for _, e := range batch {
			ok = fs.SendFrame(e.f) && ok
		}
		return ok
	})
	h.countBroadcast(start, c)
}
