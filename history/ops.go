package history

import (
	"cmp"
	"slices"
	"time"
)

// View is what a joiner is told: the room's position, and with a since
// position, whether every message after it is in Replay (in offset order).
//
// It is a plain value; Replay is the caller's.
type View[T any] struct {
	Pos       Position
	Recovered bool
	Replay    []T
}

// Append gives room's next message the next offset (leader only): build
// makes the message for its position and returns it with its size; the
// message is kept and delivered under the room's lock. It returns the
// message's position.
func (l *Log[T]) Append(name string, build func(Position) (T, int)) Position {
	for {
		r := l.get(name, true)
		r.mu.Lock()
		if r.dead.Load() {
			r.mu.Unlock()
			continue // swept meanwhile: its successor takes the name
		}
		pos := Position{Offset: r.pos.Offset + 1, Epoch: r.pos.Epoch}
		v, size := build(pos)
		now := time.Now().UnixNano()
		r.touched.Store(now)
		r.deliverLocked(Entry[T]{Offset: pos.Offset, At: now, Size: size, Value: v})
		r.mu.Unlock()
		l.bound()
		return pos
	}
}

// Accept takes a message that has position pos (follower only). It is
// delivered if it is the room's next one, dropped if it was delivered
// already, and held back if one before it is missing: then Accept reports a
// gap, which the caller repairs by fetching from the source and calling
// Sync. A room the pod does not serve is ignored.
func (l *Log[T]) Accept(name string, pos Position, v T, size int) (gap bool) {
	r := l.get(name, false)
	if r == nil || pos.Offset == 0 {
		return false
	}
	r.mu.Lock()
	gap = r.acceptLocked(pos.Epoch, Entry[T]{Offset: pos.Offset, At: time.Now().UnixNano(), Size: size, Value: v})
	r.mu.Unlock()
	l.bound()
	return gap
}

// Serve records whether this pod serves room (has members in it), for a
// follower. It reports whether the room needs a Sync: it is new, or served
// again after a pause during which messages may have passed it by.
func (l *Log[T]) Serve(name string, on bool) (needSync bool) {
	if !on {
		if r := l.get(name, false); r != nil {
			r.inactiveAt.Store(time.Now().UnixNano())
			r.active.Store(false)
		}
		return false
	}
	for {
		r := l.get(name, true)
		r.mu.Lock()
		if r.dead.Load() { // swept between get and here: its successor takes the name
			r.mu.Unlock()
			continue
		}
		was := r.active.Swap(true)
		if !was {
			r.stale.Store(true)
		}
		r.mu.Unlock()
		return !was
	}
}

// Join runs fn under room's lock with what a joiner is told (with since, the
// messages after it), so that no delivery falls between the two: every
// message after View.Pos is delivered after fn returns. A leader always
// answers. A follower answers only from what it holds: it returns false
// without calling fn if the room is not in step (unknown, or a Sync due) or
// since is not covered, and the caller then fetches from the source and
// calls Sync.
func (l *Log[T]) Join(name string, since *Position, fn func(View[T])) bool {
	for {
		r := l.get(name, l.leader)
		if r == nil {
			return false
		}
		r.mu.Lock()
		if r.dead.Load() {
			r.mu.Unlock()
			if l.leader {
				continue
			}
			return false
		}
		if !l.leader && (!r.known || r.stale.Load() || !r.active.Load()) {
			r.mu.Unlock()
			return false
		}
		v := r.viewLocked(since, nil)
		if !l.leader && since != nil && !v.Recovered {
			r.mu.Unlock()
			return false
		}
		r.touched.Store(time.Now().UnixNano())
		fn(v)
		r.mu.Unlock()
		l.bound() // a join may have added a position
		return true
	}
}

// SyncResult says what a Sync found.
//
// It is a plain value.
type SyncResult struct {
	// Gap: messages are still held back after a gap; sync again shortly.
	Gap bool
	// Stale: the read was older than the room's epoch here (it moved on
	// meanwhile) and was not applied; read again.
	Stale bool
	// Regressed: the source's position is behind what this pod delivered
	// before the read, in the same epoch: the source lost recent writes,
	// and the offsets after cur will be given again to other messages. The
	// caller should make the source start a new epoch.
	Regressed bool
}

// Sync brings room in step with its source (follower only): before is the
// room's position here when the source was read (Position's), cur is the
// source's position and entries its messages after some offset, ascending
// and contiguous (the oldest may be missing, trimmed by the source), read at
// once. What this pod had not delivered is delivered, in order; what the
// source no longer has is given up (OnHole). A read from another epoch than
// the room's here is applied only if the room's epoch did not change since
// before (the source is the authority on epochs, but a read can be late).
// Then fn, if not nil, runs under the room's lock as in Join, with entries
// also used for the replay.
func (l *Log[T]) Sync(name string, before, cur Position, entries []Entry[T], since *Position, fn func(View[T])) (res SyncResult) {
	r := l.get(name, fn != nil)
	if r == nil {
		return res
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.known && r.pos.Epoch != cur.Epoch && r.pos.Epoch != before.Epoch:
		return SyncResult{Stale: true}
	case !r.known:
		r.startLocked(cur, entries)
	case r.pos.Epoch != cur.Epoch:
		l.resets.Add(1)
		r.resetLocked(cur.Epoch)
		r.feedLocked(cur, entries)
	default:
		if before.Epoch == cur.Epoch && cur.Offset < before.Offset {
			l.regressions.Add(1)
			res.Regressed = true
		}
		r.feedLocked(cur, entries)
	}
	r.stale.Store(false)
	res.Gap = r.drainLocked()
	if fn != nil {
		v := r.viewLocked(since, entries)
		r.touched.Store(time.Now().UnixNano())
		fn(v)
	}
	return res
}

// startLocked places a room whose position was unknown. Messages that came
// meanwhile came after the pod subscribed: its members get them, and the
// source's entries between them and cur. The rest came before the pod served
// the room: kept for later joiners, not delivered.
func (r *room[T]) startLocked(cur Position, entries []Entry[T]) {
	start := cur.Offset
	for off, h := range r.pending {
		if h.epoch == cur.Epoch && off > 0 && off <= start {
			start = off - 1
		}
	}
	r.known, r.pos = true, Position{Offset: start, Epoch: cur.Epoch}
	for _, e := range entries {
		if e.Offset <= start {
			r.pushLocked(e)
		}
	}
	r.feedLocked(cur, entries)
}

// feedLocked delivers entries after the room's position, up to cur, giving
// up what is missing from them.
func (r *room[T]) feedLocked(cur Position, entries []Entry[T]) {
	for _, e := range entries {
		if e.Offset <= r.pos.Offset || e.Offset > cur.Offset {
			continue
		}
		if e.Offset > r.pos.Offset+1 {
			r.holeLocked(e.Offset - 1)
		}
		r.deliverLocked(e)
		r.log.repaired.Add(1)
	}
	if cur.Offset > r.pos.Offset {
		if _, ok := r.pending[r.pos.Offset+1]; !ok {
			r.holeLocked(cur.Offset)
		}
	}
}

// viewLocked is what a joiner with since is told; extra are messages read
// from the source that may reach further back than the ring.
func (r *room[T]) viewLocked(since *Position, extra []Entry[T]) View[T] {
	v := View[T]{Pos: r.pos}
	if since == nil || since.Epoch != r.pos.Epoch || since.Offset > r.pos.Offset {
		return v
	}
	if since.Offset == r.pos.Offset {
		v.Recovered = true
		return v
	}
	r.trimLocked(time.Now().Add(-r.log.opts.TTL).UnixNano())
	oldest := r.oldestLocked()
	if len(extra) > 0 && (oldest == 0 || extra[0].Offset < oldest) {
		oldest = extra[0].Offset
	}
	if oldest == 0 || since.Offset+1 < oldest {
		return v // older than anything kept: no replay is possible
	}
	replay := make([]T, 0, min(r.pos.Offset-since.Offset, uint64(r.n+len(extra))))
	next := since.Offset + 1
	for _, e := range extra {
		if e.Offset == next && e.Offset <= r.pos.Offset {
			replay = append(replay, e.Value)
			next++
		}
	}
	for i := range r.n {
		e := &r.ring[(r.head+i)%len(r.ring)]
		if e.Offset == next {
			replay = append(replay, e.Value)
			next++
		}
	}
	if next != r.pos.Offset+1 {
		return v
	}
	v.Recovered, v.Replay = true, replay
	return v
}

// bound keeps the log under MaxBytes: while it is over, the older half (by
// age) of what is kept goes, room by room; with no message left, the older
// half of the idle rooms' positions (clients of those rooms then get
// recovered:false). One caller does it at a time; the others go on.
func (l *Log[T]) bound() {
	if l.bytes.Load() <= l.opts.MaxBytes || !l.evictMu.TryLock() {
		return
	}
	defer l.evictMu.Unlock()
	for range 64 {
		if l.bytes.Load() <= l.opts.MaxBytes*9/10 {
			return
		}
		oldest := l.oldest()
		now := time.Now().UnixNano()
		if oldest == 0 || oldest >= now {
			if !l.forgetIdle() {
				return
			}
			continue
		}
		l.each(func(r *room[T]) {
			r.mu.Lock()
			r.trimLocked(oldest + (now-oldest)/2 + 1)
			r.mu.Unlock()
		})
	}
}

// forgetIdle forgets the older half (by last use) of the rooms that keep no
// message and are not served, and reports whether it forgot any.
func (l *Log[T]) forgetIdle() bool {
	var idle []*room[T]
	l.each(func(r *room[T]) {
		r.mu.Lock()
		if r.n == 0 && (l.leader || !r.active.Load()) {
			idle = append(idle, r)
		}
		r.mu.Unlock()
	})
	slices.SortFunc(idle, func(a, b *room[T]) int { return cmp.Compare(a.touched.Load(), b.touched.Load()) })
	idle = idle[:(len(idle)+1)/2]
	for _, r := range idle {
		r.mu.Lock()
		gone := r.n == 0 && (l.leader || !r.active.Load())
		if gone {
			r.dead.Store(true)
		}
		r.mu.Unlock()
		if gone {
			l.forget(r)
		}
	}
	return len(idle) > 0
}

// oldest returns when the oldest kept message was stored (0: none).
func (l *Log[T]) oldest() int64 {
	var min int64
	l.each(func(r *room[T]) {
		r.mu.Lock()
		if r.n > 0 && (min == 0 || r.ring[r.head].At < min) {
			min = r.ring[r.head].At
		}
		r.mu.Unlock()
	})
	return min
}

// each calls fn for every room, with no stripe lock held.
func (l *Log[T]) each(fn func(r *room[T])) {
	for i := range l.stripes {
		s := &l.stripes[i]
		s.mu.RLock()
		rooms := make([]*room[T], 0, len(s.rooms))
		for _, r := range s.rooms {
			rooms = append(rooms, r)
		}
		s.mu.RUnlock()
		for _, r := range rooms {
			fn(r)
		}
	}
}

// Position returns room's position and whether it is known (a follower's
// is not until its first Sync), and whether messages are held back after a
// gap or a Sync is due.
func (l *Log[T]) Position(name string) (pos Position, known, behind bool) {
	r := l.get(name, false)
	if r == nil {
		return Position{}, false, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos, r.known, len(r.pending) > 0 || r.stale.Load()
}

// Has reports whether the message at pos was delivered already (a follower
// checks before it builds a message it would drop).
func (l *Log[T]) Has(name string, pos Position) bool {
	r := l.get(name, false)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known && r.pos.Epoch == pos.Epoch && pos.Offset <= r.pos.Offset
}
