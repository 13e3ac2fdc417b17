// Package history keeps the recent messages of each room in memory, each
// with its offset in the room, so that a client that reconnects can be given
// what it missed, in order and exactly once.
//
// A Log works in one of two modes. A leader log (NewLeader) is the authority
// on offsets: Append gives a room's next message the next offset, as a pod
// without Redis does. A follower log (NewFollower) learns offsets from
// elsewhere (Redis): Accept takes a message with its position, delivers it
// when it is the next one, holds it back while an earlier one is missing,
// and drops it if it was delivered already, so a pod delivers every message
// of a room once and in offset order whatever path it came by. Either way
// the log calls its deliver function under the room's lock, in offset order,
// and a join runs under the same lock (Join, Sync), so that a joiner's
// position, its replay and the live messages that follow never overlap or
// leave a hole.
//
// Bounds: Size messages and TTL of age per room, MaxBytes over all rooms
// (the oldest messages of the whole log go first). A room's position (its
// last offset and epoch) outlives its messages, so that a client of a quiet
// room is still recovered; a leader forgets an idle room's position after
// MetaTTL, a follower a room it stopped serving after FollowerGrace.
package history

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Position is a place in a room's history: the offset of the last message
// (0 before the first) in an epoch. The epoch changes whenever the room's
// history was lost, so an offset is only meaningful with its epoch.
//
// It is a plain value.
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Entry is one message of a history, with its offset, when it was stored
// (Unix nanoseconds), and its size in bytes (for the memory bound).
//
// It is a plain value; Value is shared, not copied.
type Entry[T any] struct {
	Offset uint64
	At     int64
	Size   int
	Value  T
}

// Options bounds a Log. The zero value means the defaults.
//
// It is a plain value, copied by NewLeader and NewFollower.
type Options struct {
	// Size is how many messages a room keeps. Default 100.
	Size int
	// TTL is how long a message is kept. Default 5 minutes.
	TTL time.Duration
	// MaxBytes bounds the messages of all rooms together (their encoded
	// size plus 64 bytes each) and the rooms' positions (256 bytes each):
	// past it the oldest messages go first, then the positions of the
	// rooms idle longest. Default 64 MiB.
	MaxBytes int64
	// MetaTTL is how long a leader keeps an idle room's position after its
	// last message. Default 24 hours.
	MetaTTL time.Duration
	// FollowerGrace is how long a follower keeps the state of a room it no
	// longer serves. Default 30 seconds.
	FollowerGrace time.Duration
}

// Defaults: what a chat platform keeps for a reconnecting client.
const (
	DefaultSize          = 100
	DefaultTTL           = 5 * time.Minute
	DefaultMaxBytes      = 64 << 20
	DefaultMetaTTL       = 24 * time.Hour
	DefaultFollowerGrace = 30 * time.Second
)

// entryOverhead is what a kept message costs besides its bytes.
const entryOverhead = 64

func (o *Options) fill() {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MetaTTL <= 0 {
		o.MetaTTL = DefaultMetaTTL
	}
	if o.FollowerGrace <= 0 {
		o.FollowerGrace = DefaultFollowerGrace
	}
}

// Log is the history of many rooms. All methods may be called concurrently;
// deliver (given to the constructor) is called with the room's lock held and
// must not call back into the Log for the same room.
type Log[T any] struct {
	opts    Options
	leader  bool
	deliver func(room string, v T)
	stripes [64]stripe[T]

	// OnHole, if set before the log is used, is told of messages a follower
	// gave up (from..to of room): its members will not get them. It runs
	// with the room's lock held.
	OnHole func(room string, from, to uint64)

	bytes   atomic.Int64
	evictMu sync.Mutex // one eviction pass at a time

	holes, resets, repaired, regressions, dropped atomic.Uint64
}

type stripe[T any] struct {
	mu    sync.RWMutex
	rooms map[string]*room[T]
}

// NewLeader returns a log that gives offsets itself (Append).
func NewLeader[T any](o Options, deliver func(room string, v T)) *Log[T] {
	return newLog(o, true, deliver)
}

// NewFollower returns a log that takes offsets from elsewhere (Accept, Sync).
func NewFollower[T any](o Options, deliver func(room string, v T)) *Log[T] {
	return newLog(o, false, deliver)
}

func newLog[T any](o Options, leader bool, deliver func(string, T)) *Log[T] {
	o.fill()
	l := &Log[T]{opts: o, leader: leader, deliver: deliver}
	for i := range l.stripes {
		l.stripes[i].rooms = map[string]*room[T]{}
	}
	return l
}

// Options returns the log's bounds, defaults filled in.
func (l *Log[T]) Options() Options { return l.opts }

// NewEpoch returns a fresh random epoch.
// Epochs are 16 random hex digits drawn once per process followed by a
// counter in hex: unique across processes and within one, and cheap (an
// epoch is drawn for every append batch, in case the room has none).
func NewEpoch() string {
	b := make([]byte, 0, 32)
	b = append(b, epochPrefix...)
	return string(strconv.AppendUint(b, epochSeq.Add(1), 16))
}

var (
	epochPrefix = func() string {
		b := make([]byte, 8)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
	epochSeq atomic.Uint64
)

func (l *Log[T]) stripe(name string) *stripe[T] {
	return &l.stripes[xxhash.Sum64String(name)%uint64(len(l.stripes))]
}

// get returns room name, creating it (a leader's starts at offset 0 of a new
// epoch; a follower's is unknown until Sync) if create is set.
func (l *Log[T]) get(name string, create bool) *room[T] {
	s := l.stripe(name)
	s.mu.RLock()
	r := s.rooms[name]
	s.mu.RUnlock()
	if r != nil && r.dead.Load() {
		r = nil
	}
	if r != nil || !create {
		return r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r = s.rooms[name]; r == nil || r.dead.Load() {
		if r == nil {
			l.bytes.Add(roomOverhead) // a dead one's is taken over
		}
		r = &room[T]{name: name, log: l}
		if l.leader {
			r.pos, r.known = Position{Epoch: NewEpoch()}, true
		}
		r.touched.Store(time.Now().UnixNano())
		s.rooms[name] = r
	}
	return r
}

// roomOverhead is what a room's position costs, counted in MaxBytes.
const roomOverhead = 256

// Stats are a log's figures.
//
// It is a plain value.
type Stats struct {
	// Rooms is how many rooms have a position; Bytes what their messages
	// take (with overhead).
	Rooms int
	Bytes int64
	// Holes counts messages a follower could not get (its source no longer
	// had them); Resets epoch changes a follower saw; Repaired messages a
	// follower delivered from a Sync (it had missed them); Regressions
	// reads that found the source behind what was delivered (it lost
	// writes); Dropped messages refused as implausible (far ahead).
	Holes, Resets, Repaired, Regressions, Dropped uint64
}

// Stats returns the log's figures.
func (l *Log[T]) Stats() Stats {
	n := 0
	for i := range l.stripes {
		s := &l.stripes[i]
		s.mu.RLock()
		n += len(s.rooms)
		s.mu.RUnlock()
	}
	return Stats{Rooms: n, Bytes: l.bytes.Load(), Holes: l.holes.Load(), Resets: l.resets.Load(), Repaired: l.repaired.Load(),
		Regressions: l.regressions.Load(), Dropped: l.dropped.Load()}
}

// Sweep drops messages older than TTL, and rooms idle past MetaTTL (leader)
// or no longer served for FollowerGrace (follower). Call it now and then (a
// Handler does every few seconds); the other bounds hold without it.
func (l *Log[T]) Sweep(now time.Time) {
	l.each(func(r *room[T]) {
		if !r.sweep(now) {
			return
		}
		l.forget(r)
	})
}

// forget removes r, marked dead, from its stripe.
func (l *Log[T]) forget(r *room[T]) {
	s := l.stripe(r.name)
	s.mu.Lock()
	if s.rooms[r.name] == r {
		delete(s.rooms, r.name)
		l.bytes.Add(-roomOverhead)
	}
	s.mu.Unlock()
}
