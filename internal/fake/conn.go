// Package fake holds the test doubles that the hub's tests and the benchmarks
// share: connections that record or merely count what they are sent, and the
// naive single-lock hub used as the benchmarks' baseline and as "a Hub that
// is not ours" in tests.
//
// It is generic over the message type (and the frame type), so it imports
// nothing of the root package: the root package's own tests can use it.
package fake

import (
	"encoding/json"
	"sync"
	"sync/atomic"
)

// Wire is what an encoded frame offers a connection: the bytes to write.
//
// Concurrency: Wire may be called from several goroutines at once.
type Wire interface{ Wire() []byte }

// ringSize bounds what a counting connection keeps: it wraps, so a benchmark
// of any length keeps a steady state, as a real connection that is flushed.
const ringSize = 16

// Conn is a Connection written the way a user writes one: Send only.
// Instantiated with the root package's Message it implements
// realtime.Connection. All methods may be called concurrently.
type Conn[M any] struct {
	id, user string
	record   bool // keep every message (tests) or only count (benchmarks)

	// Refuse makes Send (and SendFrame) of a recording connection return
	// false, as a full queue does.
	Refuse atomic.Bool
	// Gone is set by a test once Unregister returned; a send after it is
	// counted in Late (it must stay 0).
	Gone atomic.Bool
	Late atomic.Int64
	// Closed counts Close calls.
	Closed atomic.Int32

	mu   sync.Mutex
	n    uint64
	msgs []*M
	ring [ringSize][]byte
}

// NewConn returns a connection that records every message it is sent.
func NewConn[M any](id, user string) *Conn[M] {
	return &Conn[M]{id: id, user: user, record: true}
}

// NewCounting returns a connection for benchmarks: Send encodes the message
// to JSON, as the classic per-connection writer does, and keeps only the last
// few encodings and a count, so a delivery costs what a real enqueue costs.
func NewCounting[M any](id string) *Conn[M] { return &Conn[M]{id: id} }

// ID returns the connection's ID.
func (c *Conn[M]) ID() string { return c.id }

// UserID returns the user given to NewConn.
func (c *Conn[M]) UserID() string { return c.user }

// Close counts the call.
func (c *Conn[M]) Close() { c.Closed.Add(1) }

// Send records (or encodes and counts) m; false if Refuse is set. A
// counting connection (benchmarks) only encodes and counts: it costs what a
// real enqueue costs, no more.
func (c *Conn[M]) Send(m *M) bool {
	if c.record {
		if !c.admit() {
			return false
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.n++
		c.mu.Unlock()
		return true
	}
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	c.keep(b)
	return true
}

// admit counts a late delivery and reports whether the send is taken.
func (c *Conn[M]) admit() bool {
	if c.Gone.Load() {
		c.Late.Add(1)
	}
	return !c.Refuse.Load()
}

// keep stores b in the ring and counts it.
func (c *Conn[M]) keep(b []byte) {
	c.mu.Lock()
	c.ring[c.n%ringSize] = b
	c.n++
	c.mu.Unlock()
}

// Received returns the messages recorded so far.
func (c *Conn[M]) Received() []*M {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*M(nil), c.msgs...)
}

// Count returns how many deliveries (messages and frames) were taken.
func (c *Conn[M]) Count() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
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
	return &FrameConn[M, F]{Conn: Conn[M]{id: id, user: user, record: true}}
}

// NewCountingFrames returns a frame connection for benchmarks: it keeps the
// last few frames' bytes and a count.
func NewCountingFrames[M any, F Wire](id string) *FrameConn[M, F] {
	return &FrameConn[M, F]{Conn: Conn[M]{id: id}}
}

// Send counts the call, then is Conn.Send.
func (c *FrameConn[M, F]) Send(m *M) bool {
	c.Sends.Add(1)
	return c.Conn.Send(m)
}

// SendFrame records (or counts) f; false if Refuse is set (recording
// connections only, as for Send).
func (c *FrameConn[M, F]) SendFrame(f F) bool {
	if !c.record {
		c.keep(f.Wire())
		return true
	}
	if !c.admit() {
		return false
	}
	c.fmu.Lock()
	c.frames = append(c.frames, f)
	c.fmu.Unlock()
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return true
}

// Frames returns the frames recorded so far.
func (c *FrameConn[M, F]) Frames() []F {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	return append([]F(nil), c.frames...)
}
