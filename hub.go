package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/realtimehub/realtime/shard"
)

// HubOption configures a ShardedHub.
//
// Options are applied once, by NewHub, before the hub is used.
type HubOption func(*hubOptions)

type hubOptions struct {
	shards, stripeSize, fanoutWorkers int
}

// WithShards sets the number of lock stripes for connections and for rooms,
// rounded up to a power of two. Default: 8 × GOMAXPROCS, at least 16.
func WithShards(n int) HubOption { return func(o *hubOptions) { o.shards = n } }

// WithStripeSize sets how many members of a room share one lock; a broadcast
// to a room with several stripes is spread over several goroutines.
// Default: 1024.
func WithStripeSize(n int) HubOption { return func(o *hubOptions) { o.stripeSize = n } }

// WithFanoutWorkers sets how many goroutines (the caller's included) one
// broadcast may use for a room with several stripes. Default: GOMAXPROCS.
// 1 keeps every broadcast on the caller's goroutine.
func WithFanoutWorkers(n int) HubOption { return func(o *hubOptions) { o.fanoutWorkers = n } }

// sendAdapter gives a Connection that is not a FrameSender the FrameSender
// method, by calling Send with the frame's message. Wrapping once at Register
// means fan-out makes one interface call per recipient and no type test.
type sendAdapter struct{ Connection }

func (a sendAdapter) SendFrame(f *Frame) bool { return a.Send(f.Message()) }

// asFrameSender returns conn's FrameSender view, wrapping it if needed.
func asFrameSender(conn Connection) FrameSender {
	if fs, ok := conn.(FrameSender); ok {
		return fs
	}
	return &sendAdapter{conn}
}

// unwrap returns the Connection a registry value stands for.
func unwrap(fs FrameSender) Connection {
	if a, ok := fs.(*sendAdapter); ok {
		return a.Connection
	}
	return fs
}

// ShardedHub is the Hub: a lock-striped registry of connections and rooms
// (package shard) with broadcasts encoded once per message. All methods may
// be called concurrently.
//
// The hub calls Connection.Send and FrameSender.SendFrame while holding a
// read lock on the recipient's shard or stripe: they must not block and must
// not call back into the hub (the Connection contract already says Send only
// queues).
type ShardedHub struct {
	reg     *shard.Registry[FrameSender]
	logger  *slog.Logger
	workers int

	closed  atomic.Bool
	running atomic.Bool

	hooksMu sync.Mutex
	hooks   []func() // run when Run's context ends, before closeAll

	stats hubCounters
}

// Compile-time check that ShardedHub is a Hub.
var _ Hub = (*ShardedHub)(nil)

// NewHub returns a hub ready for use. A nil logger means slog.Default().
// Run must be called for the hub to shut its connections down when its
// context ends; every other method works without it.
func NewHub(logger *slog.Logger, opts ...HubOption) *ShardedHub {
	if logger == nil {
		logger = slog.Default()
	}
	var o hubOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.fanoutWorkers <= 0 {
		o.fanoutWorkers = runtime.GOMAXPROCS(0)
	}
	return &ShardedHub{
		reg:     shard.New[FrameSender](shard.Options{Shards: o.shards, StripeSize: o.stripeSize}),
		logger:  logger,
		workers: o.fanoutWorkers,
	}
}

// Run blocks until ctx ends, then closes every registered connection (calling
// its Close) and returns nil. From then on the hub refuses new connections
// (Register closes them). Run may be called only once; a second call returns
// ErrHubRunning at once.
func (h *ShardedHub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return ErrHubRunning
	}
	<-ctx.Done()
	h.closed.Store(true)
	h.hooksMu.Lock()
	hooks := h.hooks
	h.hooksMu.Unlock()
	var wg sync.WaitGroup
	for _, hook := range hooks {
		wg.Go(hook) // handlers shut down their connections in parallel
	}
	wg.Wait()
	h.closeAll()
	h.logger.Info("realtime: hub stopped")
	return nil
}

// OnShutdown registers fn to run when Run's context ends, before the hub
// closes the connections that are left; the functions run in parallel.
// Handlers use it to close their connections with 1001 and flush them.
func (h *ShardedHub) OnShutdown(fn func()) {
	h.hooksMu.Lock()
	h.hooks = append(h.hooks, fn)
	h.hooksMu.Unlock()
}

// closeWorkers bounds the goroutines that close connections at shutdown.
const closeWorkers = 32

// closeAll closes every registered connection. Close is called outside the
// registry's locks, since a connection's Close usually unregisters it.
// Connections registered while this runs see closed and close themselves.
func (h *ShardedHub) closeAll() {
	var conns []Connection
	h.reg.EachConn(1, func(fs FrameSender) bool {
		conns = append(conns, unwrap(fs))
		return true
	})
	// Close may block (a user's transport flushing): run a few at once.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(closeWorkers, len(conns)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(conns)); i = next.Add(1) - 1 {
				conns[i].Close()
				h.Unregister(conns[i])
			}
		})
	}
	wg.Wait()
}

// Register adds conn to the hub. See Add for the rules; Register logs what Add
// returns instead of returning it.
func (h *ShardedHub) Register(conn Connection) {
	if err := h.Add(conn); err != nil {
		h.logger.Warn("realtime: register", "conn", conn.ID(), "err", err)
	}
}

// Add adds conn to the hub. Registering the same connection twice is a no-op.
// If a different connection is registered under the same ID, the old one is
// removed from the hub and closed and conn takes its place (IDs are meant to
// be unique; a reuse means the old socket is stale). After Run has returned,
// Add closes conn and returns ErrHubClosed.
func (h *ShardedHub) Add(conn Connection) error {
	id := conn.ID()
	fs := asFrameSender(conn)
	for {
		if h.closed.Load() {
			conn.Close()
			return fmt.Errorf("%w: register %q", ErrHubClosed, id)
		}
		err := h.reg.Register(id, fs)
		if err == nil {
			h.stats.registered.Add(1)
			if h.closed.Load() { // Run's closeAll may have missed it
				h.reg.Unregister(id)
				conn.Close()
				return fmt.Errorf("%w: register %q", ErrHubClosed, id)
			}
			return nil
		}
		old, ok := h.reg.Get(id)
		if !ok {
			continue // unregistered meanwhile: try again
		}
		if sameConnection(unwrap(old), conn) {
			return nil
		}
		if got, ok := h.reg.Unregister(id); ok {
			h.logger.Warn("realtime: connection ID reused; closing the older connection", "conn", id)
			unwrap(got).Close()
		}
	}
}

// sameConnection compares two Connections, treating values that cannot be
// compared (a struct with a slice, passed by value) as different.
func sameConnection(a, b Connection) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}

// Unregister removes conn from the hub and from every room it joined. Once it
// has returned, no later Broadcast or SendTo reaches conn. Unregistering a
// connection that is not registered does nothing. Only the connection
// registered under conn.ID() is removed: not another one that took its ID.
func (h *ShardedHub) Unregister(conn Connection) {
	isConn := func(fs FrameSender) bool { return sameConnection(unwrap(fs), conn) }
	if _, ok := h.reg.UnregisterIf(conn.ID(), isConn); ok {
		h.stats.unregistered.Add(1)
	}
}

// JoinRoom adds conn to room. Joining a room twice is a no-op. See Join for a
// version that reports errors; JoinRoom logs them.
func (h *ShardedHub) JoinRoom(conn Connection, room string) {
	if _, err := h.Join(conn, room, 0); err != nil {
		h.logger.Warn("realtime: join room", "conn", conn.ID(), "room", room, "err", err)
	}
}

// Join adds conn to room and reports whether it was added (false if it was a
// member already). limit, when positive, is the most rooms conn may be in.
// It returns ErrNotRegistered if conn is not registered and ErrTooManyRooms if
// the limit is reached.
func (h *ShardedHub) Join(conn Connection, room string, limit int) (bool, error) {
	return h.reg.Join(conn.ID(), room, limit)
}

// LeaveRoom removes conn from room. Leaving a room not joined does nothing.
func (h *ShardedHub) LeaveRoom(conn Connection, room string) {
	h.Leave(conn, room)
}

// Leave removes conn from room and reports whether it was a member.
func (h *ShardedHub) Leave(conn Connection, room string) bool {
	return h.reg.Leave(conn.ID(), room)
}

// Rooms returns the rooms conn is in, in no particular order.
func (h *ShardedHub) Rooms(conn Connection) []string {
	return h.reg.Rooms(conn.ID())
}

// Broadcast sends msg to every member of msg.Room, or to every connection
// if msg.Room is empty. The message is encoded once; connections that
// implement FrameSender get the shared Frame, others get Send(msg). A
// recipient whose queue is full is skipped (and counted in Stats); it does
// not slow the others down.
func (h *ShardedHub) Broadcast(msg *Message) {
	if msg == nil {
		return
	}
	if _, err := h.BroadcastCount(msg); err != nil {
		h.logger.Error("realtime: broadcast", "room", msg.Room, "type", msg.Type, "err", err)
	}
}

// BroadcastCount is Broadcast that reports how many connections took the
// message, and an error if the message cannot be encoded (then nobody gets it).
// A message for a room with no member here is not encoded at all.
func (h *ShardedHub) BroadcastCount(msg *Message) (delivered int, err error) {
	if h.audience(msg.Room) == 0 {
		return 0, nil
	}
	f, err := NewFrame(msg)
	if err != nil {
		return 0, err
	}
	return h.BroadcastFrame(msg.Room, f), nil
}

// audience returns how many connections a broadcast to room would visit.
func (h *ShardedHub) audience(room string) int {
	if room == "" {
		return h.reg.Len()
	}
	return h.reg.RoomLen(room)
}

// BroadcastFrame delivers an encoded message to every member of room, or to
// every connection if room is empty, and returns how many took it. It is how
// a Broadcaster hands the hub a message it encoded once for the whole pod.
func (h *ShardedHub) BroadcastFrame(room string, f *Frame) int {
	start := time.Now()
	var c shard.Counts
	if room == "" {
		c = h.reg.EachConn(h.workers, frameVisitor(f))
	} else {
		c = h.reg.EachInRoom(room, h.workers, frameVisitor(f))
	}
	h.countBroadcast(start, c)
	return c.Delivered
}

// countBroadcast records a broadcast that started at start and visited
// c.Visited members, c.Delivered of which took it (none visited: nothing).
func (h *ShardedHub) countBroadcast(start time.Time, c shard.Counts) {
	if c.Visited == 0 {
		return
	}
	h.stats.observeFanout(time.Since(start).Seconds())
	h.stats.broadcasts.Add(1)
	h.stats.delivered.Add(uint64(c.Delivered))
	h.stats.dropped.Add(uint64(c.Visited - c.Delivered))
}

// frameVisitor returns the per-recipient step of a broadcast: one interface
// call, no allocation.
func frameVisitor(f *Frame) shard.Visit[FrameSender] {
	return func(fs FrameSender) bool { return fs.SendFrame(f) }
}

// SendTo sends msg to the connection registered under connID and reports
// whether it took it (false if unknown, closed, or its queue is full).
func (h *ShardedHub) SendTo(connID string, msg *Message) bool {
	if msg == nil {
		return false
	}
	ok := shard.DoWith(h.reg, connID, sendToArgs{h, msg}, sendTo)
	if ok {
		h.stats.delivered.Add(1)
	}
	return ok
}

// SendFrameTo delivers an encoded message to the connection registered under
// connID and reports whether it took it.
func (h *ShardedHub) SendFrameTo(connID string, f *Frame) bool {
	ok := shard.DoWith(h.reg, connID, f, sendFrame)
	if ok {
		h.stats.delivered.Add(1)
	}
	return ok
}

func sendFrame(fs FrameSender, f *Frame) bool { return fs.SendFrame(f) }

type sendToArgs struct {
	h   *ShardedHub
	msg *Message
}

// sendTo is SendTo's step under the registry's read lock.
func sendTo(fs FrameSender, a sendToArgs) bool {
	if ad, ok := fs.(*sendAdapter); ok {
		return ad.Send(a.msg) // no need to encode for a Connection that does it itself
	}
	f, err := NewFrame(a.msg)
	if err != nil {
		a.h.logger.Error("realtime: send to", "conn", fs.ID(), "type", a.msg.Type, "err", err)
		return false
	}
	return fs.SendFrame(f)
}

// ConnectionCount returns the number of registered connections.
func (h *ShardedHub) ConnectionCount() int { return h.reg.Len() }

// RoomCount returns the number of connections in room (0 if it has none).
func (h *ShardedHub) RoomCount(room string) int { return h.reg.RoomLen(room) }

// WatchRooms calls fn for every room that has members now, then whenever a
// room gets its first member (active) or loses its last. fn runs with the
// room's shard locked: it must be quick and must not call the hub.
func (h *ShardedHub) WatchRooms(fn func(room string, active bool)) {
	h.reg.OnRoomChange(fn)
	h.reg.EachRoom(func(room string) { fn(room, true) })
}

// EachRoom calls fn with every room that has a member.
func (h *ShardedHub) EachRoom(fn func(room string)) { h.reg.EachRoom(fn) }

// EachConnection calls fn for every member of room (every connection if room
// is empty). fn runs under the hub's read locks: it must not block or call
// the hub.
func (h *ShardedHub) EachConnection(room string, fn func(Connection)) {
	visit := func(fs FrameSender) bool { fn(unwrap(fs)); return true }
	if room == "" {
		h.reg.EachConn(1, visit)
		return
	}
	h.reg.EachInRoom(room, 1, visit)
}

// NumRooms returns the number of rooms with at least one member.
func (h *ShardedHub) NumRooms() int { return h.reg.NumRooms() }
