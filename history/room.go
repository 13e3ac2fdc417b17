package history

import (
	"sync"
	"sync/atomic"
	"time"
)

// room is one room's position and recent messages. Its fields below mu are
// guarded by mu; the log calls deliver with mu held, so every delivery to the
// room and every join of it happen in one order.
type room[T any] struct {
	name string
	log  *Log[T]

	touched    atomic.Int64 // last message or join, Unix ns (leader: for MetaTTL)
	active     atomic.Bool  // follower: the pod serves the room now
	stale      atomic.Bool  // follower: served again after a pause; Sync due
	inactiveAt atomic.Int64 // follower: when it stopped being served
	dead       atomic.Bool  // swept: a new room takes its name

	mu      sync.Mutex
	pos     Position
	known   bool       // follower: pos is set (by Sync)
	ring    []Entry[T] // circular, len Size once used; nil while empty
	head, n int
	bytes   int64
	pending map[uint64]held[T] // follower: arrived ahead of a missing one
}

// held is a message that arrived before the one it follows.
type held[T any] struct {
	epoch string
	e     Entry[T]
}

// maxPending bounds what a follower holds back while it waits for a missing
// message; past it the missing ones are given up (counted as holes).
const maxPending = 4096

func (r *room[T]) oldestLocked() uint64 {
	if r.n == 0 {
		return 0
	}
	return r.ring[r.head].Offset
}

// pushLocked keeps e, the room's newest message, dropping the oldest when the
// room is full.
func (r *room[T]) pushLocked(e Entry[T]) {
	size := len(r.ring)
	if r.ring == nil {
		size = r.log.opts.Size
		r.ring = make([]Entry[T], size)
	}
	if r.n == size {
		r.dropOldestLocked()
	}
	r.ring[(r.head+r.n)%size] = e
	r.n++
	cost := int64(e.Size + entryOverhead)
	r.bytes += cost
	r.log.bytes.Add(cost)
}

func (r *room[T]) dropOldestLocked() {
	var zero Entry[T]
	cost := int64(r.ring[r.head].Size + entryOverhead)
	r.ring[r.head] = zero
	r.head = (r.head + 1) % len(r.ring)
	r.n--
	r.bytes -= cost
	r.log.bytes.Add(-cost)
	if r.n == 0 {
		r.ring, r.head = nil, 0 // an idle room keeps only its position
	}
}

// trimLocked drops the messages stored before cutoff (Unix ns).
func (r *room[T]) trimLocked(cutoff int64) {
	for r.n > 0 && r.ring[r.head].At < cutoff {
		r.dropOldestLocked()
	}
}

// clearLocked drops every message.
func (r *room[T]) clearLocked() {
	for r.n > 0 {
		r.dropOldestLocked()
	}
}

// deliverLocked delivers e, the next message, and keeps it.
func (r *room[T]) deliverLocked(e Entry[T]) {
	r.pos.Offset = e.Offset
	r.pushLocked(e)
	r.log.deliver(r.name, e.Value)
}

// acceptLocked takes a message with its position (follower); see Accept.
func (r *room[T]) acceptLocked(epoch string, e Entry[T]) (gap bool) {
	if !r.known {
		r.holdLocked(epoch, e)
		return false
	}
	if epoch != r.pos.Epoch {
		// Another epoch: the source lost the room's history (or this is a
		// late copy from before). Only a read of the source decides which:
		// mark the room due for one (stale) and report a gap.
		r.stale.Store(true)
		return true
	}
	switch {
	case e.Offset <= r.pos.Offset:
		return false // delivered already
	case e.Offset == r.pos.Offset+1:
		r.deliverLocked(e)
		return r.drainLocked()
	case e.Offset-r.pos.Offset > maxAhead:
		r.log.dropped.Add(1) // implausible: a malformed or foreign envelope
		return false
	default:
		r.holdLocked(epoch, e)
		return true
	}
}

// maxAhead is how far past the room's position a message may be held; one
// further ahead is dropped as malformed.
const maxAhead = 1 << 20

// resetLocked starts epoch from offset 0, forgetting the old one.
func (r *room[T]) resetLocked(epoch string) {
	r.clearLocked()
	r.pos = Position{Epoch: epoch}
	for off, h := range r.pending {
		if h.epoch != epoch {
			delete(r.pending, off)
		}
	}
}

func (r *room[T]) holdLocked(epoch string, e Entry[T]) {
	if r.pending == nil {
		r.pending = map[uint64]held[T]{}
	}
	r.pending[e.Offset] = held[T]{epoch, e}
	if len(r.pending) > maxPending && r.known {
		r.skipToPendingLocked()
	}
}

// drainLocked delivers the held messages that are next in turn, and reports
// whether some are still held (a gap remains).
func (r *room[T]) drainLocked() (gap bool) {
	for len(r.pending) > 0 {
		h, ok := r.pending[r.pos.Offset+1]
		if !ok {
			break
		}
		delete(r.pending, h.e.Offset)
		if h.epoch == r.pos.Epoch {
			r.deliverLocked(h.e)
		}
	}
	for off, h := range r.pending {
		if off <= r.pos.Offset || h.epoch != r.pos.Epoch {
			delete(r.pending, off)
		}
	}
	if len(r.pending) == 0 {
		r.pending = nil
		return false
	}
	return true
}

// skipToPendingLocked gives up the missing messages before the oldest held
// one: they are counted as holes, and the ring restarts after them.
func (r *room[T]) skipToPendingLocked() {
	lowest := uint64(0)
	for off, h := range r.pending {
		if h.epoch == r.pos.Epoch && (lowest == 0 || off < lowest) {
			lowest = off
		}
	}
	if lowest == 0 {
		return
	}
	r.holeLocked(lowest - 1)
	r.drainLocked()
}

// holeLocked moves the position to off over messages that cannot be had.
func (r *room[T]) holeLocked(off uint64) {
	if off <= r.pos.Offset {
		return
	}
	r.log.holes.Add(off - r.pos.Offset)
	if r.log.OnHole != nil {
		r.log.OnHole(r.name, r.pos.Offset+1, off)
	}
	r.clearLocked() // the ring must stay contiguous
	r.pos.Offset = off
}

// sweep applies TTL and reports whether the room should go (it is marked
// dead then).
func (r *room[T]) sweep(now time.Time) bool {
	o := &r.log.opts
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trimLocked(now.Add(-o.TTL).UnixNano())
	var gone bool
	if r.log.leader {
		gone = r.n == 0 && now.Sub(time.Unix(0, r.touched.Load())) > o.MetaTTL
	} else {
		gone = !r.active.Load() && now.Sub(time.Unix(0, r.inactiveAt.Load())) > o.FollowerGrace
	}
	if gone {
		r.clearLocked()
		r.dead.Store(true)
	}
	return gone
}
