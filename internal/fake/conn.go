// Package fake holds the test doubles that the hub's tests and the benchmarks
// share: connections that record what they are sent (Conn, FrameConn), the
// enqueue-only state of a benchmark connection (Counter), and the naive
// single-lock hub used as the benchmarks' baseline and as "a Hub that is not
// ours" in tests.
//
// The recording types and the hub are generic over the message type (and
// the frame type), so the package imports nothing of the root package: the
// root package's own tests can use it. Counter is not generic: a benchmark
// wraps it in a three-line type of its own, because a generic method on the
// delivery path is an indirect call (about 6 ns per delivery measured here),
// a cost a real connection does not have.
package fake

import (
	"sync"
	"sync/atomic"
)

// Wire is what an encoded frame offers a connection: the bytes to write.
//
// Concurrency: Wire may be called from several goroutines at once.
type Wire interface{ Wire() []byte }

// ringSize bounds what a Counter keeps: it wraps, so a benchmark of any
// length keeps a steady state, as a real connection that is flushed.
const ringSize = 16

// Counter is what a benchmark connection does with a delivery: what a real
// connection's enqueue does before a writer flushes (a mutex, one slot of a
// ring, a count). Its zero value is ready. All methods may be called
// concurrently.
type Counter struct {
	mu   sync.Mutex
	n    uint64
	ring [ringSize][]byte
}

// Keep stores b in the ring and counts it; it always takes it.
func (c *Counter) Keep(b []byte) bool {
	c.mu.Lock()
	c.ring[c.n%ringSize] = b
	c.n++
	c.mu.Unlock()
	return true
}

// Count returns how many deliveries were kept.
func (c *Counter) Count() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Conn is a Connection written the way a user writes one: Send only.
// Instantiated with the root package's Message it implements
// realtime.Connection. All methods may be called concurrently.
type Conn[M any] struct {
	id, user string

	// Refuse makes Send (and SendFrame) return false, as a full queue does.
	Refuse atomic.Bool
	// Gone is set by a test once Unregister returned; a send after it is
	// counted in Late (it must stay 0).
	Gone atomic.Bool
	Late atomic.Int64
	// Closed counts Close calls.
	Closed atomic.Int32

	mu   sync.Mutex
	msgs []*M
}

// NewConn returns a connection that records every message it is sent.
func NewConn[M any](id, user string) *Conn[M] {
	return &Conn[M]{id: id, user: user}
}

// ID returns the connection's ID.
func (c *Conn[M]) ID() string { return c.id }

// UserID returns the user given to NewConn.
func (c *Conn[M]) UserID() string { return c.user }

// Close counts the call.
func (c *Conn[M]) Close() { c.Closed.Add(1) }

// Send records m; false if Refuse is set.
func (c *Conn[M]) Send(m *M) bool {
	if !c.admit() {
		return false
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	return true
}

// admit counts a late delivery and reports whether the send is taken.
func (c *Conn[M]) admit() bool {
	if c.Gone.Load() {
		c.Late.Add(1)
	}
	return !c.Refuse.Load()
}

// Received returns the messages recorded so far.
func (c *Conn[M]) Received() []*M {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*M(nil), c.msgs...)
}

// FrameConn is Conn plus SendFrame, the fast path our own connections offer:
// instantiated with the root package's Message and *Frame it implements
// realtime.FrameSender. All methods may be called concurrently.
type FrameConn[M any, F Wire] struct {
	Conn[M]
	// Sends counts Send calls (a broadcast to a FrameSender must make none).
	Sends atomic.Int64

	fmu    sync.Mutex
	frames []F
}

// NewFrameConn returns a frame connection that records every frame.
func NewFrameConn[M any, F Wire](id, user string) *FrameConn[M, F] {
	return &FrameConn[M, F]{Conn: Conn[M]{id: id, user: user}}
}

// Send counts the call, then is Conn.Send.
func (c *FrameConn[M, F]) Send(m *M) bool {
	c.Sends.Add(1)
	return c.Conn.Send(m)
}

// SendFrame records f; false if Refuse is set.
func (c *FrameConn[M, F]) SendFrame(f F) bool {
	if !c.admit() {
		return false
	}
	c.fmu.Lock()
	c.frames = append(c.frames, f)
	c.fmu.Unlock()
	return true
}

// Frames returns the frames recorded so far.
func (c *FrameConn[M, F]) Frames() []F {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return append([]F(nil), c.frames...)
}
