package bench

import (
	"encoding/json"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/fake"
)

// The benchmarks' connections only enqueue (fake.Counter), as a real
// connection's Send does before a writer flushes. A plain one encodes per
// recipient, as the classic per-connection writer does; a frame one takes
// the hub's shared frame. They are concrete types, not fake's generic ones:
// a generic method on the delivery path costs an indirect call.
type queueConn struct {
	id string
	fake.Counter
}

func (c *queueConn) ID() string     { return c.id }
func (c *queueConn) UserID() string { return "" }
func (c *queueConn) Close()         {}

func (c *queueConn) Send(m *realtime.Message) bool {
	b, err := json.Marshal(m)
	return err == nil && c.Keep(b)
}

type frameConn struct{ queueConn }

func (c *frameConn) SendFrame(f *realtime.Frame) bool { return c.Keep(f.Wire()) }

func newQueueConn(id string) realtime.Connection { return &queueConn{id: id} }

func newFrameConn(id string) realtime.Connection { return &frameConn{queueConn{id: id}} }

// newNaiveHub returns the baseline hub.
func newNaiveHub() *fake.NaiveHub[realtime.Connection, realtime.Message] {
	return fake.NewNaiveHub[realtime.Connection](func(m *realtime.Message) string { return m.Room })
}

// delivered returns how many deliveries a benchmark connection took.
func delivered(c realtime.Connection) uint64 {
	return c.(interface{ Count() uint64 }).Count()
}
