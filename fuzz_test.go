package realtime

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// discardConn is a socket that swallows writes: the fallback transport's
// writer runs against it, so commands exercise the whole reply path.
type discardConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (d *discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (d *discardConn) Close() error                     { d.once.Do(func() { close(d.closed) }); return nil }
func (d *discardConn) Read([]byte) (int, error)         { <-d.closed; return 0, net.ErrClosed }

// FuzzCommand feeds arbitrary frames' payloads to the command handler of a
// registered connection: no panic, and the hub's state stays within the
// limits (the connection is in at most MaxRoomsPerConn rooms, each of which
// has it as its only member).
func FuzzCommand(f *testing.F) {
	for _, seed := range []string{
		`{"type":"join","room":"r"}`, `{"type":"leave","room":"r"}`, `{"type":"chat","room":"r","data":{"a":1}}`,
		`{"type":"chat","to":"x.1","data":1}`, `{"type":"presence","data":{"status":"away"}}`, `{"type":"ping"}`,
		`{"type":"system"}`, `{"type":""}`, `[]`, `null`, `{"type":"join","room":"` + "\xff" + `"}`,
		`{"type":"typing","room":"r","data":"` + "\u2028" + `"}`, `{"type":1}`, `{"data":{"status":null},"type":"presence"}`,
	} {
		f.Add([]byte(seed))
	}
	hub := NewHub(quietLogger(), WithShards(4))
	h := NewHandler(hub, quietLogger(), HandlerConfig{MaxRoomsPerConn: 3, RateLimit: -1})
	f.Fuzz(func(t *testing.T, payload []byte) {
		nc := &discardConn{closed: make(chan struct{})}
		c := &conn{id: "fuzz.1", h: h, fd: -1, nc: nc, hbPos: -1}
		c.ident.Store(&Identity{UserID: "u"})
		hub.Register(c)
		h.eng.live.Add(1) // as attach does
		h.userArrived(c)
		defer func() {
			c.teardown(nil)
			assert.Zero(t, hub.ConnectionCount())
			assert.False(t, h.Online("u"))
		}()
		for range 2 { // twice: joins become re-joins, leaves of joined rooms
			h.handleMessage(c, append([]byte(nil), payload...))
		}
		rooms := hub.Rooms(c)
		assert.LessOrEqual(t, len(rooms), 3)
		for _, r := range rooms {
			assert.True(t, ValidRoomName(r), "joined an invalid room %q", r)
			assert.Equal(t, 1, hub.RoomCount(r))
		}
	})
}
