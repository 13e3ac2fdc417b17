package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/fake"
)

// The hub's test doubles (internal/fake): a Connection as a user writes it
// (Send only) and one that takes encoded frames, as our own connection does.
type (
	plainConn = fake.Conn[Message]
	frameConn = fake.FrameConn[Message, *Frame]
)

func newPlain(id string) *plainConn { return fake.NewConn[Message](id, "u-"+id) }

func newFrameConn(id string) *frameConn { return fake.NewFrameConn[Message, *Frame](id, "u-"+id) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func chat(room, text string) *Message {
	return &Message{Type: MessageTypeChat, Room: room, Data: json.RawMessage(fmt.Sprintf("%q", text))}
}

func TestHubRegisterUnregister(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	a, b := newPlain("a"), newPlain("b")
	h.Register(a)
	h.Register(a) // twice: no-op
	h.Register(b)
	assert.Equal(t, 2, h.ConnectionCount())

	h.Unregister(newPlain("unknown")) // unknown: no-op
	assert.Equal(t, 2, h.ConnectionCount())

	h.Unregister(a)
	h.Unregister(a)
	assert.Equal(t, 1, h.ConnectionCount())
	assert.False(t, h.SendTo("a", chat("", "x")))
	assert.Zero(t, a.Closed.Load(), "Unregister does not close: the caller owns the connection")
}

func TestHubDuplicateIDReplacesAndClosesOld(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	old, fresh := newPlain("same"), newPlain("same")
	h.Register(old)
	h.JoinRoom(old, "r")
	h.Register(fresh)
	assert.Equal(t, 1, h.ConnectionCount())
	assert.EqualValues(t, 1, old.Closed.Load(), "the stale connection is closed")
	assert.Equal(t, 0, h.RoomCount("r"), "and removed from its rooms")

	h.Unregister(old) // the old value must not remove the new one
	assert.Equal(t, 1, h.ConnectionCount())
	assert.True(t, h.SendTo("same", chat("", "hi")))
	assert.Len(t, fresh.Received(), 1)
	assert.Empty(t, old.Received())
}

func TestHubRooms(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	a, b, c := newPlain("a"), newPlain("b"), newPlain("c")
	for _, x := range []*plainConn{a, b, c} {
		h.Register(x)
	}
	h.JoinRoom(a, "r")
	h.JoinRoom(a, "r") // twice
	h.JoinRoom(b, "r")
	h.JoinRoom(c, "other")
	assert.Equal(t, 2, h.RoomCount("r"))
	assert.Equal(t, 1, h.RoomCount("other"))
	assert.Equal(t, 0, h.RoomCount("nope"))
	assert.Equal(t, 2, h.NumRooms())

	h.LeaveRoom(c, "r") // not joined: no-op
	assert.Equal(t, 2, h.RoomCount("r"))

	h.Broadcast(chat("r", "hello"))
	assert.Len(t, a.Received(), 1, "joined twice, delivered once")
	assert.Len(t, b.Received(), 1)
	assert.Empty(t, c.Received())

	h.LeaveRoom(a, "r")
	h.Broadcast(chat("r", "again"))
	assert.Len(t, a.Received(), 1)
	assert.Len(t, b.Received(), 2)

	h.Unregister(b)
	assert.Equal(t, 0, h.RoomCount("r"), "unregister leaves every room")
	assert.Equal(t, 1, h.NumRooms(), "an emptied room is gone")
}

func TestHubJoinErrors(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	stranger := newPlain("s")
	h.JoinRoom(stranger, "r") // logged, not added
	assert.Equal(t, 0, h.RoomCount("r"))
	_, err := h.Join(stranger, "r", 0)
	assert.ErrorIs(t, err, ErrNotRegistered)

	a := newPlain("a")
	h.Register(a)
	ok, err := h.Join(a, "r1", 1)
	assert.True(t, ok)
	assert.NoError(t, err)
	_, err = h.Join(a, "r2", 1)
	assert.ErrorIs(t, err, ErrTooManyRooms)
	assert.Equal(t, []string{"r1"}, h.Rooms(a))
	assert.True(t, h.Leave(a, "r1"))
	assert.False(t, h.Leave(a, "r1"))
}

func TestHubBroadcastAll(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	conns := make([]*plainConn, 10)
	for i := range conns {
		conns[i] = newPlain(fmt.Sprint(i))
		h.Register(conns[i])
	}
	h.JoinRoom(conns[0], "r")
	msg := &Message{Type: MessageTypeNotification, Data: json.RawMessage(`1`)}
	h.Broadcast(msg)
	for _, c := range conns {
		got := c.Received()
		require.Len(t, got, 1)
		assert.Same(t, msg, got[0])
	}
	h.Broadcast(nil) // no panic
}

// Our own connections get the one shared frame; user connections get Send.
func TestHubBroadcastEncodesOnce(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	fast := []*frameConn{newFrameConn("f1"), newFrameConn("f2"), newFrameConn("f3")}
	plain := newPlain("p")
	for _, c := range fast {
		h.Register(c)
		h.JoinRoom(c, "r")
	}
	h.Register(plain)
	h.JoinRoom(plain, "r")

	msg := chat("r", "once")
	n, err := h.BroadcastCount(msg)
	require.NoError(t, err)
	assert.Equal(t, 4, n)

	first := fast[0].Frames()
	require.Len(t, first, 1)
	want, err := json.Marshal(msg)
	require.NoError(t, err)
	assert.Equal(t, want, first[0].Payload())
	for _, c := range fast {
		got := c.Frames()
		require.Len(t, got, 1)
		assert.Same(t, first[0], got[0], "the same frame value for every recipient")
		assert.Zero(t, c.Sends.Load())
	}
	require.Len(t, plain.Received(), 1)
	assert.Same(t, msg, plain.Received()[0])
}

func TestHubBroadcastBadMessage(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	c := newFrameConn("c")
	h.Register(c)
	h.JoinRoom(c, "r")
	_, err := h.BroadcastCount(&Message{Type: "chat", Room: "r", Data: json.RawMessage(`{bad`)})
	assert.Error(t, err)
	assert.Empty(t, c.Frames())
	assert.False(t, h.SendTo("c", &Message{Type: "chat", Data: json.RawMessage(`{bad`)}))
}

func TestHubSendTo(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	p, f := newPlain("p"), newFrameConn("f")
	h.Register(p)
	h.Register(f)
	assert.True(t, h.SendTo("p", chat("", "to p")))
	assert.True(t, h.SendTo("f", chat("", "to f")))
	assert.False(t, h.SendTo("nobody", chat("", "x")), "unknown ID")
	assert.False(t, h.SendTo("p", nil))
	assert.Len(t, p.Received(), 1)
	assert.Len(t, f.Frames(), 1)

	p.Refuse.Store(true)
	assert.False(t, h.SendTo("p", chat("", "full")), "a connection whose Send returns false")
}

// A connection that refuses (queue full) is skipped; the others still get
// everything, and the refusal is counted.
func TestHubRefusingConnection(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	good, bad := newFrameConn("good"), newFrameConn("bad")
	bad.Refuse.Store(true)
	for _, c := range []*frameConn{good, bad} {
		h.Register(c)
		h.JoinRoom(c, "r")
	}
	for i := range 5 {
		n, err := h.BroadcastCount(chat("r", fmt.Sprint(i)))
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	}
	assert.Len(t, good.Frames(), 5)
	st := h.Stats()
	assert.EqualValues(t, 5, st.Broadcasts)
	assert.EqualValues(t, 5, st.Delivered)
	assert.EqualValues(t, 5, st.Dropped)
}

// A room bigger than a stripe is fanned out on several goroutines; every
// member still gets each message exactly once.
func TestHubStripedBroadcast(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4), WithStripeSize(8), WithFanoutWorkers(4))
	conns := make([]*frameConn, 100)
	for i := range conns {
		conns[i] = newFrameConn(fmt.Sprint(i))
		h.Register(conns[i])
		h.JoinRoom(conns[i], "big")
	}
	for i := range 3 {
		n, err := h.BroadcastCount(chat("big", fmt.Sprint(i)))
		require.NoError(t, err)
		assert.Equal(t, 100, n)
	}
	for _, c := range conns {
		assert.Len(t, c.Frames(), 3)
	}
}

func TestHubRunClosesEverything(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(4))
	conns := make([]*plainConn, 50)
	for i := range conns {
		conns[i] = newPlain(fmt.Sprint(i))
		h.Register(conns[i])
		h.JoinRoom(conns[i], "r")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	require.Eventually(t, h.running.Load, time.Second, time.Millisecond)
	assert.ErrorIs(t, h.Run(ctx), ErrHubRunning, "a second Run")
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	for _, c := range conns {
		assert.EqualValues(t, 1, c.Closed.Load())
	}
	assert.Equal(t, 0, h.ConnectionCount())
	assert.Equal(t, 0, h.RoomCount("r"))

	late := newPlain("late")
	assert.ErrorIs(t, h.Add(late), ErrHubClosed)
	assert.EqualValues(t, 1, late.Closed.Load(), "a connection arriving after shutdown is closed")
	assert.Equal(t, 0, h.ConnectionCount())
}

// Many goroutines register, join, leave, broadcast, send to and unregister at
// once (run with -race). Afterwards the counts are exact, and no message
// reached a connection after its Unregister returned.
func TestHubConcurrentStress(t *testing.T) {
	h := NewHub(quietLogger(), WithShards(8), WithStripeSize(16), WithFanoutWorkers(2))
	rooms := []string{"r0", "r1", "r2", "r3", "r4"}
	const workers, perWorker = 8, 400

	stop := make(chan struct{})
	var senders sync.WaitGroup
	for s := range 4 {
		senders.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch i % 3 {
				case 0:
					h.Broadcast(chat(rooms[i%len(rooms)], "x"))
				case 1:
					h.SendTo(fmt.Sprintf("w%d-%d", i%workers, i%perWorker), chat("", "dm"))
				default:
					if s == 0 && i%30 == 2 {
						h.Broadcast(chat("", "all"))
					}
				}
			}
		})
	}

	type kept struct {
		conn  Connection
		rooms map[string]bool
	}
	results := make([][]kept, workers)
	var all sync.Map
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perWorker {
				id := fmt.Sprintf("w%d-%d", w, i)
				var c Connection
				var gone *atomic.Bool
				if i%2 == 0 {
					fc := newFrameConn(id)
					c, gone = fc, &fc.Gone
				} else {
					pc := newPlain(id)
					c, gone = pc, &pc.Gone
				}
				all.Store(id, c)
				h.Register(c)
				joined := map[string]bool{}
				for _, r := range rooms {
					if rng.IntN(2) == 0 {
						h.JoinRoom(c, r)
						joined[r] = true
					}
				}
				if r := rooms[rng.IntN(len(rooms))]; joined[r] {
					h.LeaveRoom(c, r)
					delete(joined, r)
				}
				if rng.IntN(3) > 0 {
					h.Unregister(c)
					gone.Store(true)
				} else {
					results[w] = append(results[w], kept{c, joined})
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	senders.Wait()

	wantConns, wantRooms := 0, map[string]int{}
	for _, ks := range results {
		wantConns += len(ks)
		for _, k := range ks {
			for r := range k.rooms {
				wantRooms[r]++
			}
		}
	}
	assert.Equal(t, wantConns, h.ConnectionCount())
	for _, r := range rooms {
		assert.Equal(t, wantRooms[r], h.RoomCount(r), "room %s", r)
	}
	var late int64
	all.Range(func(_, v any) bool {
		switch c := v.(type) {
		case *frameConn:
			late += c.Late.Load()
		case *plainConn:
			late += c.Late.Load()
		}
		return true
	})
	assert.Zero(t, late, "deliveries after Unregister returned")
	st := h.Stats()
	assert.EqualValues(t, workers*perWorker, st.Registered)
	assert.EqualValues(t, workers*perWorker-wantConns, st.Unregistered)
}
