package realtime

import (
	"cmp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// userIndex is the handler's index of its users: each user's connections on
// this pod (linked through conn.nextOfUser), the status a client set, and the
// offline announcement that waits PresenceDebounce after the user's last
// connection here closed. Anonymous connections are not in it.
//
// All methods may be called concurrently: each user lives in one of 16
// shards, under that shard's lock.
type userIndex struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[string]*userEntry
	}
	online atomic.Int64 // users with a connection here
}

// userEntry is one user's state on this pod, guarded by its shard's lock.
type userEntry struct {
	head   *conn  // this pod's connections of the user
	n      int    // how many
	status string // set by a presence command ("" is online)
	// gone holds the rooms of the user's connections that closed since it
	// last had none here closing: they hear the offline event. timer runs
	// the offline check (settleOffline) while n == 0, or, after an offline
	// announced here without a tracker, forgets the entry.
	gone      map[string]struct{}
	timer     *time.Timer
	announced []string // rooms told the user is offline (no tracker), for its return
}

// maxGoneRooms bounds the rooms remembered for one user's offline event.
const maxGoneRooms = 1024

func (x *userIndex) shard(user string) *struct {
	mu sync.Mutex
	m  map[string]*userEntry
} {
	return &x.shards[xxhash.Sum64String(user)%uint64(len(x.shards))]
}

// add indexes c and reports whether it is its user's first connection here;
// back lists the rooms told the user was offline (without a tracker), which
// hear now that it is back. A pending offline check is cancelled: the user
// came back within the debounce. track, if not nil, runs under the user's
// lock once c is counted (it must only queue): a tracker's writes then
// follow the counts in order (see count).
func (x *userIndex) add(c *conn, user string, track func()) (first bool, back []string) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*userEntry{}
	}
	e := s.m[user]
	if e == nil {
		e = &userEntry{}
		s.m[user] = e
	}
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	back, e.announced, e.gone = e.announced, nil, nil
	c.nextOfUser = e.head
	e.head = c
	e.n++
	if e.n == 1 {
		x.online.Add(1)
	}
	if track != nil {
		track()
	}
	return e.n == 1, back
}

// remove takes c out of the index, remembers its rooms for the offline event,
// and reports whether it was its user's last connection here; then settle
// runs after debounce (unless the user comes back first). track runs as
// add's does, once c is no longer counted.
func (x *userIndex) remove(c *conn, user string, rooms []string, debounce time.Duration, settle, track func()) (last bool) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil || !e.unlink(c) {
		return false // never indexed: nothing to undo
	}
	if track != nil {
		track()
	}
	for _, r := range rooms {
		if e.gone == nil {
			e.gone = map[string]struct{}{}
		}
		if len(e.gone) < maxGoneRooms {
			e.gone[r] = struct{}{}
		}
	}
	if e.n > 0 {
		return false
	}
	x.online.Add(-1)
	e.status = ""
	var t *time.Timer
	t = time.AfterFunc(debounce, func() {
		s.mu.Lock()
		if s.m[user] != e || e.timer != t || e.n > 0 {
			s.mu.Unlock() // the user came back, or a later check replaced this one
			return
		}
		e.timer = nil
		s.mu.Unlock()
		settle()
	})
	e.timer = t
	return true
}

// unlink removes c from e's list.
func (e *userEntry) unlink(c *conn) bool {
	for p := &e.head; *p != nil; p = &(*p).nextOfUser {
		if *p == c {
			*p = c.nextOfUser
			c.nextOfUser = nil
			e.n--
			return true
		}
	}
	return false
}

// takeGone returns the rooms remembered for user's offline event, if the
// user still has no connection here. With keep > 0 (no tracker: this pod
// decides) the entry stays, holding those rooms for the user's return (add
// gives them back), and is forgotten after keep; announce, if not nil, runs
// with them before the lock is released, so that a return's online comes
// after this offline. Without keep the entry goes.
func (x *userIndex) takeGone(user string, keep time.Duration, announce func(rooms []string)) (rooms []string, ok bool) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[user]
	if e == nil || e.n > 0 {
		return nil, false
	}
	for r := range e.gone {
		rooms = append(rooms, r)
	}
	e.gone = nil
	if keep <= 0 || len(rooms) == 0 {
		delete(s.m, user)
		return rooms, true
	}
	e.announced = rooms
	if announce != nil {
		announce(rooms) // only queues: nothing in it takes this lock
	}
	e.timer = time.AfterFunc(keep, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.m[user] == e && e.n == 0 {
			delete(s.m, user)
		}
	})
	return rooms, true
}

// each calls fn for each of user's connections here, outside the shard's
// lock (fn may close a connection, whose teardown takes it), and returns
// how many.
func (x *userIndex) each(user string, fn func(c *conn)) int {
	var buf [4]*conn
	conns := buf[:0]
	s := x.shard(user)
	s.mu.Lock()
	if e := s.m[user]; e != nil {
		for c := e.head; c != nil; c = c.nextOfUser {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		fn(c)
	}
	return len(conns)
}

// locked runs fn with user's connections here, under the user's lock: what
// fn queues is ordered with what add's and remove's track functions queue.
func (x *userIndex) locked(user string, fn func(n int)) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if e := s.m[user]; e != nil {
		n = e.n
	}
	fn(n)
}

// count returns user's connections here and its status.
func (x *userIndex) count(user string) (n int, status string) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[user]; e != nil && e.n > 0 {
		return e.n, cmp.Or(e.status, PresenceOnline)
	}
	return 0, ""
}

// setStatus records the status a client of user set.
func (x *userIndex) setStatus(user, status string) {
	s := x.shard(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[user]; e != nil && e.n > 0 {
		if status == PresenceOnline {
			status = ""
		}
		e.status = status
	}
}

// Online reports whether user has at least one connection on this handler.
func (h *Handler) Online(user string) bool {
	n, _ := h.users.count(user)
	return n > 0
}

// validStatus reports whether s is a presence status a client may set.
func validStatus(s string) bool {
	return s == PresenceOnline || s == PresenceAway || s == PresenceOffline
}
