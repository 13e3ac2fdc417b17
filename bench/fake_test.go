package bench

import (
	"encoding/json"
	"sync"

	"github.com/realtimehub/realtime"
)

// ringSize bounds a fake connection's queue; it wraps, so that a benchmark of
// any length keeps a steady state (a real connection would be flushed).
const ringSize = 16

// queueConn only enqueues, as a real connection's Send does before a writer
// flushes: a mutex, one slot of a ring, a counter. Its Send encodes the
// message first, as the classic per-connection writer does; its SendFrame
// (the sharded hub's fast path) stores the shared frame.
type queueConn struct {
	id string
	mu sync.Mutex
	n  uint64
	q  [ringSize][]byte
}

func (c *queueConn) ID() string     { return c.id }
func (c *queueConn) UserID() string { return "" }
func (c *queueConn) Close()         {}

func (c *queueConn) Send(m *realtime.Message) bool {
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	return c.enqueue(b)
}

func (c *queueConn) enqueue(b []byte) bool {
	c.mu.Lock()
	c.q[c.n%ringSize] = b
	c.n++
	c.mu.Unlock()
	return true
}

// frameConn is queueConn plus the FrameSender fast path.
type frameConn struct{ queueConn }

func (c *frameConn) SendFrame(f *realtime.Frame) bool { return c.enqueue(f.Wire()) }

func (c *queueConn) count() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
