package bench

import (
	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/fake"
)

// The benchmarks' connections only enqueue, as a real connection's Send does
// before a writer flushes. A plain one encodes per recipient, as the classic
// per-connection writer does; a frame one takes the hub's shared frame.
type (
	queueConn = fake.Conn[realtime.Message]
	frameConn = fake.FrameConn[realtime.Message, *realtime.Frame]
)

func newQueueConn(id string) realtime.Connection { return fake.NewCounting[realtime.Message](id) }

func newFrameConn(id string) realtime.Connection {
	return fake.NewCountingFrames[realtime.Message, *realtime.Frame](id)
}

// newNaiveHub returns the baseline hub.
func newNaiveHub() *fake.NaiveHub[realtime.Connection, realtime.Message] {
	return fake.NewNaiveHub[realtime.Connection](func(m *realtime.Message) string { return m.Room })
}

// delivered returns how many deliveries a benchmark connection took.
func delivered(c realtime.Connection) uint64 {
	switch c := c.(type) {
	case *queueConn:
		return c.Count()
	case *frameConn:
		return c.Count()
	}
	panic("not a benchmark connection")
}
