package realtime

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// expiries holds the connections whose credentials expire, in a min-heap by
// expiry time, with one timer armed for the earliest. A connection costs an
// entry (16 bytes) and its place in the heap (conn.expPos), not a runtime
// timer, a closure and a map entry of its own (about 200 bytes each with
// expiring tokens). Its methods run under mu, which the Handler's expiry
// methods take.
type expiries struct {
	mu      sync.Mutex
	heap    []expiryEntry
	timer   *time.Timer  // armed for timerAt, or nil before the first
	timerAt int64        // unix ns the timer is armed for; 0: not armed
	n       atomic.Int64 // entries, read without mu: 0 lets detach skip the lock
}

// expiryNanos is t in unix nanoseconds, within [1, MaxInt64]: a JWT's
// "never" (exp 9999999999, year 2286) does not wrap to a negative time that
// fires at once forever, and a time at or before 1970 is due, not 0 (which
// timerAt reads as "not armed").
func expiryNanos(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case t.Before(time.Unix(0, 1)):
		return 1
	}
	return t.UnixNano()
}

// expiryEntry is a connection and when its credentials expire (unix ns).
type expiryEntry struct {
	c  *conn
	at int64
}

// set puts c in the heap at at, or moves it there.
func (x *expiries) set(c *conn, at int64) {
	if c.expPos > 0 {
		i := int(c.expPos) - 1
		x.heap[i].at = at
		x.fix(i)
		return
	}
	x.heap = append(x.heap, expiryEntry{c, at})
	c.expPos = int32(len(x.heap))
	x.n.Add(1)
	x.up(len(x.heap) - 1)
}

// remove takes c out of the heap and reports whether it was there.
func (x *expiries) remove(c *conn) bool {
	if c.expPos == 0 {
		return false
	}
	i, last := int(c.expPos)-1, len(x.heap)-1
	x.swap(i, last)
	x.heap[last] = expiryEntry{}
	x.heap = x.heap[:last]
	c.expPos = 0
	x.n.Add(-1)
	if i < last {
		x.fix(i)
	}
	switch {
	case len(x.heap) == 0:
		x.heap = nil // give back the memory of a storm's worth of entries
	case cap(x.heap) > 1024 && len(x.heap) < cap(x.heap)/4:
		x.heap = append(make([]expiryEntry, 0, 2*len(x.heap)), x.heap...) // same places
	}
	return true
}

// popDue takes out of the heap the connections due at now (unix ns) and
// appends them to due.
func (x *expiries) popDue(now int64, due []*conn) []*conn {
	for len(x.heap) > 0 && x.heap[0].at <= now {
		c := x.heap[0].c
		x.remove(c)
		due = append(due, c)
	}
	return due
}

// next is when the earliest connection expires (unix ns), and false if none
// does.
func (x *expiries) next() (int64, bool) {
	if len(x.heap) == 0 {
		return 0, false
	}
	return x.heap[0].at, true
}

func (x *expiries) fix(i int) {
	if !x.down(i) {
		x.up(i)
	}
}

func (x *expiries) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if x.heap[parent].at <= x.heap[i].at {
			return
		}
		x.swap(i, parent)
		i = parent
	}
}

// down moves entry i down to its place and reports whether it moved.
func (x *expiries) down(i int) bool {
	start := i
	for {
		least, l := i, 2*i+1
		if l < len(x.heap) && x.heap[l].at < x.heap[least].at {
			least = l
		}
		if r := l + 1; r < len(x.heap) && x.heap[r].at < x.heap[least].at {
			least = r
		}
		if least == i {
			return i > start
		}
		x.swap(i, least)
		i = least
	}
}

func (x *expiries) swap(i, j int) {
	x.heap[i], x.heap[j] = x.heap[j], x.heap[i]
	x.heap[i].c.expPos = int32(i + 1)
	x.heap[j].c.expPos = int32(j + 1)
}

// armed is how many connections wait for their expiry.
func (x *expiries) armed() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.heap)
}

// rearmExpiry arms the timer for the earliest expiry, if it is not armed
// for it already (h.expiry.mu held).
func (h *Handler) rearmExpiry() {
	x := &h.expiry
	at, ok := x.next()
	switch {
	case !ok:
		if x.timer != nil && x.timerAt != 0 {
			x.timer.Stop()
		}
		x.timerAt = 0
	case at == x.timerAt:
	case x.timer == nil:
		x.timer = time.AfterFunc(time.Until(time.Unix(0, at)), h.fireExpiries)
		x.timerAt = at
	default:
		x.timer.Reset(time.Until(time.Unix(0, at)))
		x.timerAt = at
	}
}

// fireExpiries runs on the timer: the connections due are expired (outside
// the lock: closing one takes its own), and the timer armed for the next.
func (h *Handler) fireExpiries() {
	h.expiry.mu.Lock()
	due := h.expiry.popDue(time.Now().UnixNano(), nil)
	h.expiry.timerAt = 0
	h.rearmExpiry()
	h.expiry.mu.Unlock()
	for _, c := range due {
		h.expire(c)
	}
}
