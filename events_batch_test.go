package realtime

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// flushEvents ends h's current event window now; call it once a connection
// is attached. Reading the batcher through startOnce orders the read after
// the engine's start (which ran on a handshake's goroutine).
func flushEvents(h *Handler) {
	h.eng.startOnce.Do(func() {})
	h.eng.batches.flush()
}

// joinEventUser returns the user a join or leave event is about.
func joinEventUser(t *testing.T, m Message) string {
	t.Helper()
	var d JoinLeaveData
	require.NoError(t, json.Unmarshal(m.Data, &d))
	return d.UserID
}

// readEvents reads n join or leave events and returns "join:<user>" or
// "leave:<user>" for each, in order.
func readEvents(t *testing.T, c *client, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		m := c.read()
		if m.Type == MessageTypeJoin || m.Type == MessageTypeLeave {
			got = append(got, m.Type+":"+joinEventUser(t, m))
		}
	}
	return got
}

// A small room's join events of one window reach each member together: one
// socket write per member, not one per event. Each member hears what it
// would have heard one event at a time: the joins after its own. Each
// joiner's first join message is its own acknowledgement. (The window is an
// hour here; the test ends it.)
func TestJoinEventsOfAWindowGoTogether(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth, JoinEventsDelay: time.Hour}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, as("ua"))
		a.join("r")
		joiners := []*client{dial(t, ts.url, as("ub")), dial(t, ts.url, as("uc")), dial(t, ts.url, as("ud"))}
		for i, c := range joiners {
			c.send(map[string]any{"type": "join", "room": "r"})
			ack := c.readType(MessageTypeJoin)
			assert.Equal(t, []string{"ub", "uc", "ud"}[i], joinEventUser(t, ack), "the first join message is the joiner's own")
		}
		// Four greetings and four acknowledgements: counted once their write
		// returned, which may be after the client read them.
		require.Eventually(t, func() bool { return ts.handler.Stats().FramesOut == 8 }, 5*time.Second, 10*time.Millisecond)
		before := ts.handler.Stats()
		flushEvents(ts.handler)
		assert.Equal(t, []string{"join:ub", "join:uc", "join:ud"}, readEvents(t, a, 3))
		assert.Equal(t, []string{"join:uc", "join:ud"}, readEvents(t, joiners[0], 2))
		assert.Equal(t, []string{"join:ud"}, readEvents(t, joiners[1], 1))
		require.Eventually(t, func() bool { return ts.handler.Stats().FramesOut-before.FramesOut >= 6 }, 5*time.Second, 10*time.Millisecond)
		time.Sleep(50 * time.Millisecond) // anything more would be written by now
		after := ts.handler.Stats()
		assert.Equal(t, uint64(6), after.FramesOut-before.FramesOut, "each hears the joins after its own, as one by one")
		assert.Equal(t, uint64(3), after.Writes-before.Writes, "one write per member for the window's events")
	})
}

// A member's message to the room never overtakes its own join event, and
// leave events wait for the window like joins.
func TestMessageAfterOwnJoinEvent(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth, JoinEventsDelay: time.Hour}, func(t *testing.T, ts *testServer) {
		a, b := dial(t, ts.url, as("ua")), dial(t, ts.url, as("ub"))
		a.join("r")
		b.join("r")
		b.send(map[string]any{"type": "chat", "room": "r", "data": "hi"})
		m := a.read()
		require.Equal(t, MessageTypeJoin, m.Type, "b's join event first: %+v", m)
		assert.Equal(t, "ub", joinEventUser(t, m))
		assert.Equal(t, MessageTypeChat, a.readType(MessageTypeChat).Type)

		b.send(map[string]any{"type": "leave", "room": "r"})
		assert.Equal(t, "ub", joinEventUser(t, b.readType(MessageTypeLeave)), "the leaver's acknowledgement at once")
		flushEvents(ts.handler)
		assert.Equal(t, []string{"leave:ub"}, readEvents(t, a, 1))
	})
}

// With JoinEventsDelay negative, each event goes out at once, as before
// batching: no flush is needed for a member to hear a join.
func TestJoinEventsAtOnce(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth, JoinEventsDelay: -1}, func(t *testing.T, ts *testServer) {
		a, b := dial(t, ts.url, as("ua")), dial(t, ts.url, as("ub"))
		a.join("r")
		b.join("r")
		assert.Equal(t, []string{"join:ub"}, readEvents(t, a, 1))
	})
}

// The default window is 100 ms: a member hears a join without anyone
// ending the window.
func TestJoinEventsDefaultWindow(t *testing.T) {
	cfg, err := HandlerConfig{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 100*time.Millisecond, cfg.JoinEventsDelay)
	ts := newTestServer(t, rawDoor, HandlerConfig{Authenticate: userAuth})
	a, b := dial(t, ts.url, as("ua")), dial(t, ts.url, as("ub"))
	a.join("r")
	b.join("r")
	assert.Equal(t, []string{"join:ub"}, readEvents(t, a, 1))
}

// In a storm of joins into small rooms, each member hears exactly the joins
// after its own, whatever windows they fell in: per room of n members,
// n(n-1)/2 join events in all, and no two members that heard each other.
// (A window taken for sending before a joiner became a member, and sent
// after, gave it joins from before its own.)
func TestBatchedJoinStormHearsOnlyLaterJoins(t *testing.T) {
	const rooms, perRoom = 6, 40
	ts := newTestServer(t, rawDoor, HandlerConfig{Authenticate: userAuth, JoinEventsDelay: 5 * time.Millisecond})
	type member struct {
		mu    sync.Mutex
		heard map[string]bool
	}
	members := make([]*member, rooms*perRoom)
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < len(members); i += 20 {
				user := fmt.Sprint("u", i)
				ws, _, err := websocket.DefaultDialer.Dial(ts.url, as(user))
				if !assert.NoError(t, err) {
					return
				}
				t.Cleanup(func() { ws.Close() })
				m := &member{heard: map[string]bool{}}
				members[i] = m
				ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"type":"join","room":"r%d"}`, i%rooms)))
				go func() {
					acked := false
					for {
						_, b, err := ws.ReadMessage()
						if err != nil {
							return
						}
						var msg Message
						if json.Unmarshal(b, &msg) != nil || msg.Type != MessageTypeJoin {
							continue
						}
						var d JoinLeaveData
						json.Unmarshal(msg.Data, &d)
						if !acked && d.UserID == user {
							acked = true // its acknowledgement
							continue
						}
						m.mu.Lock()
						m.heard[d.UserID] = true
						m.mu.Unlock()
						total.Add(1)
					}
				}()
			}
		})
	}
	wg.Wait()
	want := int64(rooms * perRoom * (perRoom - 1) / 2)
	require.Eventually(t, func() bool { return total.Load() >= want }, 30*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // anything more would have arrived by now
	assert.Equal(t, want, total.Load(), "each member hears the joins after its own, once")
	mutual := 0
	for i, a := range members {
		for j, b := range members {
			if i < j && i%rooms == j%rooms {
				a.mu.Lock()
				b.mu.Lock()
				if a.heard[fmt.Sprint("u", j)] && b.heard[fmt.Sprint("u", i)] {
					mutual++
				}
				b.mu.Unlock()
				a.mu.Unlock()
			}
		}
	}
	assert.Zero(t, mutual, "members that heard each other's join")
}

// A member that leaves and joins again within a window still hears what
// happened while it was a member before (x's join), as one event at a time
// it would have: its own last join does not cut the window off.
func TestRejoinInWindowKeepsEarlierEvents(t *testing.T) {
	for _, delay := range []time.Duration{-1, time.Hour} {
		t.Run(fmt.Sprint("delay=", delay), func(t *testing.T) {
			ts := newTestServer(t, rawDoor, HandlerConfig{Authenticate: userAuth, JoinEventsDelay: delay})
			c, x := dial(t, ts.url, as("uc")), dial(t, ts.url, as("ux"))
			c.join("r")
			x.join("r")
			c.send(map[string]any{"type": "leave", "room": "r"})
			c.send(map[string]any{"type": "join", "room": "r"})
			var heard []string
			record := func(m Message) string {
				if m.Type != MessageTypeJoin && m.Type != MessageTypeLeave {
					return ""
				}
				e := m.Type + ":" + joinEventUser(t, m)
				heard = append(heard, e)
				return e
			}
			for left := false; ; { // until c's acknowledgement of its rejoin
				e := record(c.read())
				if e == "join:uc" && left {
					break
				}
				left = left || e == "leave:uc"
			}
			flushEvents(ts.handler)
			c.send(map[string]any{"type": "chat", "room": "r", "data": "marker"}) // echoed to c after anything flushed
			for m := c.read(); m.Type != MessageTypeChat; m = c.read() {
				record(m)
			}
			slices.Sort(heard)
			assert.Equal(t, []string{"join:uc", "join:ux", "leave:uc"}, heard, "x's join once, and c's own acknowledgements")
		})
	}
}
