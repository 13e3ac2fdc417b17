package shard

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Errors returned by Registry methods.
var (
	// ErrNotRegistered: the connection ID is not (or no longer) registered.
	ErrNotRegistered = errors.New("connection not registered")
	// ErrDuplicateID: another connection is registered under the same ID.
	ErrDuplicateID = errors.New("connection ID already registered")
)

// Options configures a Registry. The zero value is usable; it is copied by
// New and never modified.
type Options struct {
	// Shards is the number of connection shards and of room shards, rounded
	// up to a power of two. Default: 8 × GOMAXPROCS, at least 16 (each shard is
	// about 200 bytes, so even 1,024 shards cost little).
	Shards int
	// StripeSize is the most members one stripe of a room holds. A room with
	// more members gets more stripes, which a broadcast can visit in
	// parallel. Default: 1024 (visiting a full stripe takes about 10 µs with a
	// non-blocking callback, which bounds how long a join waits for it).
	StripeSize int
}

// DefaultShards returns the shard count used when Options.Shards is zero.
func DefaultShards() int {
	return nextPow2(max(16, 8*runtime.GOMAXPROCS(0)))
}

const defaultStripeSize = 1024

// Registry is a lock-striped set of connections and rooms. All methods may be
// called concurrently.
type Registry[C any] struct {
	conns      []connShard[C]
	rooms      []roomShard[C]
	mask       uint64
	stripeSize int
	count      atomic.Int64
	roomCount  atomic.Int64
	roomHooks  atomic.Pointer[[]func(room string, active bool)]
	hooksMu    sync.Mutex
}

// OnRoomChange registers fn to be told when a room gets its first member
// (active) and when its last member leaves. fn runs with the room's shard
// locked: it must be quick and must not call the registry.
func (r *Registry[C]) OnRoomChange(fn func(room string, active bool)) {
	r.hooksMu.Lock()
	defer r.hooksMu.Unlock()
	var hooks []func(string, bool)
	if old := r.roomHooks.Load(); old != nil {
		hooks = append(hooks, *old...)
	}
	hooks = append(hooks, fn)
	r.roomHooks.Store(&hooks)
}

func (r *Registry[C]) roomChanged(name string, active bool) {
	if hooks := r.roomHooks.Load(); hooks != nil {
		for _, fn := range *hooks {
			fn(name, active)
		}
	}
}

// EachRoom calls fn with the name of every room that has members.
func (r *Registry[C]) EachRoom(fn func(room string)) {
	for i := range r.rooms {
		sh := &r.rooms[i]
		sh.mu.RLock()
		for name := range sh.byKey {
			fn(name)
		}
		sh.mu.RUnlock()
	}
}

// entry is one registered connection. Rooms store pointers to it, so that an
// old entry leaving its rooms can never remove a newer entry with the same ID.
type entry[C any] struct {
	conn  C
	rooms []string
	mu    sync.Mutex // guards rooms and dead
	pos   int32      // index in its conn shard's list; guarded by that shard's mu
	dead  bool
}

type connShard[C any] struct {
	mu   sync.RWMutex
	byID map[string]*entry[C]
	list []*entry[C] // dense, for iteration without a map
	_    [64]byte    // keep neighbouring shards' locks off one cache line
}

type roomShard[C any] struct {
	mu    sync.RWMutex
	byKey map[string]*room[C]
	_     [64]byte
}

// room is a set of members split into stripes. stripes, index and size are
// guarded by the room shard's mu; each stripe's members by the stripe's mu.
// Stripes are only ever appended (never removed or reordered while the room
// lives), so a visitor may keep a snapshot of the stripes slice.
type room[C any] struct {
	stripes []*stripe[C]
	index   map[*entry[C]]loc
	size    int
}

type stripe[C any] struct {
	mu      sync.RWMutex
	members []slot[C]
}

// slot is one member of a stripe. The connection value is kept inline, so a
// fan-out reads the stripe sequentially instead of chasing a pointer per
// member; e identifies the membership for the index.
type slot[C any] struct {
	e    *entry[C]
	conn C
}

type loc struct{ stripe, pos int32 }

// New returns an empty Registry configured by opts.
func New[C any](opts Options) *Registry[C] {
	n := opts.Shards
	if n <= 0 {
		n = DefaultShards()
	}
	n = nextPow2(n)
	ss := opts.StripeSize
	if ss <= 0 {
		ss = defaultStripeSize
	}
	r := &Registry[C]{
		conns:      make([]connShard[C], n),
		rooms:      make([]roomShard[C], n),
		mask:       uint64(n - 1),
		stripeSize: ss,
	}
	for i := range r.conns {
		r.conns[i].byID = make(map[string]*entry[C])
		r.rooms[i].byKey = make(map[string]*room[C])
	}
	return r
}

// Shards returns the number of shards (a power of two).
func (r *Registry[C]) Shards() int { return len(r.conns) }

// StripeSize returns the most members one stripe of a room holds.
func (r *Registry[C]) StripeSize() int { return r.stripeSize }

func (r *Registry[C]) connShard(id string) *connShard[C] {
	return &r.conns[xxhash.Sum64String(id)&r.mask]
}

func (r *Registry[C]) roomShard(name string) *roomShard[C] {
	return &r.rooms[xxhash.Sum64String(name)&r.mask]
}

// Register adds c under id. It returns ErrDuplicateID if id is taken.
func (r *Registry[C]) Register(id string, c C) error {
	sh := r.connShard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.byID[id]; ok {
		return fmt.Errorf("register %q: %w", id, ErrDuplicateID)
	}
	e := &entry[C]{conn: c, pos: int32(len(sh.list))}
	sh.byID[id] = e
	sh.list = append(sh.list, e)
	r.count.Add(1)
	return nil
}

// Unregister removes the connection registered under id from the registry and
// from every room it joined, and returns it. Once Unregister has returned, no
// visitor sees the connection. ok is false if id was not registered.
func (r *Registry[C]) Unregister(id string) (c C, ok bool) {
	return r.UnregisterIf(id, nil)
}

// UnregisterIf is Unregister, done only if match (when not nil) reports true
// for the connection registered under id. The check and the removal are one
// step, so a different connection that took the same ID is never removed by
// mistake.
func (r *Registry[C]) UnregisterIf(id string, match func(C) bool) (c C, ok bool) {
	sh := r.connShard(id)
	sh.mu.Lock()
	e, ok := sh.byID[id]
	if !ok || (match != nil && !match(e.conn)) {
		sh.mu.Unlock()
		return c, false
	}
	delete(sh.byID, id)
	last := len(sh.list) - 1
	moved := sh.list[last]
	sh.list[e.pos] = moved
	moved.pos = e.pos
	sh.list[last] = nil
	sh.list = sh.list[:last]
	if cap(sh.list) > 64 && len(sh.list) < cap(sh.list)/4 {
		sh.list = append([]*entry[C](nil), sh.list...) // give memory back after a mass disconnect
	}
	sh.mu.Unlock()
	r.count.Add(-1)

	e.mu.Lock()
	e.dead = true
	for _, name := range e.rooms {
		r.removeMember(name, e)
	}
	e.rooms = nil
	e.mu.Unlock()
	return e.conn, true
}

// Get returns the connection registered under id.
func (r *Registry[C]) Get(id string) (c C, ok bool) {
	sh := r.connShard(id)
	sh.mu.RLock()
	e, ok := sh.byID[id]
	if ok {
		c = e.conn
	}
	sh.mu.RUnlock()
	return c, ok
}

// Do calls fn with the connection registered under id while holding its
// shard's read lock, so that fn never runs after Unregister(id) returned.
// It returns false if id is not registered, else what fn returned.
func (r *Registry[C]) Do(id string, fn func(C) bool) bool {
	return DoWith(r, id, fn, func(c C, fn func(C) bool) bool { return fn(c) })
}

// DoWith is Do for a function that takes an argument, so that callers on a
// hot path can pass a static function and allocate no closure.
func DoWith[C, A any](r *Registry[C], id string, arg A, fn func(C, A) bool) bool {
	sh := r.connShard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e, ok := sh.byID[id]
	if !ok {
		return false
	}
	return fn(e.conn, arg)
}

func (r *Registry[C]) lookup(id string) *entry[C] {
	sh := r.connShard(id)
	sh.mu.RLock()
	e := sh.byID[id]
	sh.mu.RUnlock()
	return e
}

// Join adds the connection registered under id to the room name. joined is
// false if it was a member already. limit, when positive, is the most rooms
// the connection may be in; joining one more returns ErrTooManyRooms.
func (r *Registry[C]) Join(id, name string, limit int) (joined bool, err error) {
	e := r.lookup(id)
	if e == nil {
		return false, fmt.Errorf("join %q: %w", name, ErrNotRegistered)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false, fmt.Errorf("join %q: %w", name, ErrNotRegistered)
	}
	for _, have := range e.rooms {
		if have == name {
			return false, nil
		}
	}
	if limit > 0 && len(e.rooms) >= limit {
		return false, fmt.Errorf("join %q: %w (limit %d)", name, ErrTooManyRooms, limit)
	}
	r.addMember(name, e)
	e.rooms = append(e.rooms, name)
	return true, nil
}

// ErrTooManyRooms: the connection is in as many rooms as the limit allows.
var ErrTooManyRooms = errors.New("too many rooms")

// Leave removes the connection registered under id from the room name.
// left is false if it was not registered or not a member.
func (r *Registry[C]) Leave(id, name string) (left bool) {
	e := r.lookup(id)
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false
	}
	for i, have := range e.rooms {
		if have == name {
			r.removeMember(name, e)
			last := len(e.rooms) - 1
			e.rooms[i] = e.rooms[last]
			e.rooms[last] = ""
			e.rooms = e.rooms[:last]
			if len(e.rooms) == 0 {
				e.rooms = nil
			}
			return true
		}
	}
	return false
}

// Rooms returns a copy of the names of the rooms the connection registered
// under id is in, in no particular order.
func (r *Registry[C]) Rooms(id string) []string {
	e := r.lookup(id)
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead || len(e.rooms) == 0 {
		return nil
	}
	return append([]string(nil), e.rooms...)
}

func (r *Registry[C]) addMember(name string, e *entry[C]) {
	sh := r.roomShard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.byKey[name]
	if rm == nil {
		rm = &room[C]{index: make(map[*entry[C]]loc)}
		sh.byKey[name] = rm
		r.roomCount.Add(1)
		r.roomChanged(name, true)
	}
	si := r.freeStripe(rm)
	st := rm.stripes[si]
	st.mu.Lock()
	rm.index[e] = loc{stripe: int32(si), pos: int32(len(st.members))}
	st.members = append(st.members, slot[C]{e: e, conn: e.conn})
	st.mu.Unlock()
	rm.size++
}

// freeStripe returns the index of a stripe with room for one more member,
// appending a new stripe if all are full. Called with the room shard locked.
func (r *Registry[C]) freeStripe(rm *room[C]) int {
	// The last stripe is the usual answer; after leaves, an earlier one may
	// have space. Reading len(members) needs only the room shard lock,
	// because members change only under it (and the stripe's own lock).
	if n := len(rm.stripes); n > 0 && len(rm.stripes[n-1].members) < r.stripeSize {
		return n - 1
	}
	for i, st := range rm.stripes {
		if len(st.members) < r.stripeSize {
			return i
		}
	}
	rm.stripes = append(rm.stripes, &stripe[C]{})
	return len(rm.stripes) - 1
}

func (r *Registry[C]) removeMember(name string, e *entry[C]) {
	sh := r.roomShard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.byKey[name]
	if rm == nil {
		return
	}
	at, ok := rm.index[e]
	if !ok {
		return
	}
	delete(rm.index, e)
	st := rm.stripes[at.stripe]
	st.mu.Lock()
	last := len(st.members) - 1
	moved := st.members[last]
	st.members[at.pos] = moved
	st.members[last] = slot[C]{}
	st.members = st.members[:last]
	if last == 0 {
		st.members = nil // an emptied stripe gives its memory back
	}
	st.mu.Unlock()
	if moved.e != e {
		rm.index[moved.e] = at
	}
	rm.size--
	if rm.size == 0 {
		delete(sh.byKey, name)
		r.roomCount.Add(-1)
		r.roomChanged(name, false)
	}
}

// Len returns the number of registered connections.
func (r *Registry[C]) Len() int { return int(r.count.Load()) }

// RoomLen returns the number of members of the room name (0 if it does not
// exist).
func (r *Registry[C]) RoomLen(name string) int {
	sh := r.roomShard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if rm := sh.byKey[name]; rm != nil {
		return rm.size
	}
	return 0
}

// RoomStripes returns how many stripes the room name has (0 if it does not
// exist): the most goroutines a broadcast to it can use.
func (r *Registry[C]) RoomStripes(name string) int {
	sh := r.roomShard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if rm := sh.byKey[name]; rm != nil {
		return len(rm.stripes)
	}
	return 0
}

// NumRooms returns the number of rooms with at least one member.
func (r *Registry[C]) NumRooms() int { return int(r.roomCount.Load()) }

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}
