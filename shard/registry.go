package shard

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Options configures a Registry. The zero value is usable; it is copied by
// New and never modified.
//
// It is a plain value, copied by New.
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
	name    string // the room's name, shared by its members' room lists
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

// Len returns the number of registered connections.
func (r *Registry[C]) Len() int { return int(r.count.Load()) }
