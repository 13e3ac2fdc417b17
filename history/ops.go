package history

import (
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
	if r == nil {
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
	r := l.get(name, true)
	if r.active.Swap(true) {
		return false
	}
	r.stale.Store(true)
	return true
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
		return true
	}
}

// Sync brings room in step with its source (follower only): cur is the
// source's position and entries its messages after some offset, ascending
// and contiguous (the oldest may be missing, trimmed by the source), read at
// once. What this pod had not delivered is delivered, in order; what the
// source no longer has is given up (OnHole). Then fn, if not nil, runs under
// the room's lock as in Join, with entries also used for the replay. Sync
// reports whether messages are still held back after a gap.
func (l *Log[T]) Sync(name string, cur Position, entries []Entry[T], since *Position, fn func(View[T])) (gap bool) {
	r := l.get(name, fn != nil)
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stale.Store(false)
	switch {
	case !r.known:
		// Messages that came while the position was unknown came after
		// the pod subscribed: its members get them, and the source's
		// entries between them and cur. The rest came before the pod
		// served the room: kept for later joiners, not delivered.
		start := cur.Offset
		for off, h := range r.pending {
			if h.epoch == cur.Epoch && off <= start {
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
	case r.pos.Epoch != cur.Epoch:
		l.resets.Add(1)
		r.resetLocked(cur.Epoch)
		fallthrough
	default:
		r.feedLocked(cur, entries)
	}
	gap = r.drainLocked()
	if fn != nil {
		v := r.viewLocked(since, entries)
		r.touched.Store(time.Now().UnixNano())
		fn(v)
	}
	return gap
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
	replay := make([]T, 0, r.pos.Offset-since.Offset)
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
// age) of what is kept goes, room by room. One caller does it at a time;
// the others go on.
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
			return
		}
		l.each(func(r *room[T]) {
			r.mu.Lock()
			r.trimLocked(oldest + (now-oldest)/2 + 1)
			r.mu.Unlock()
		})
	}
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
