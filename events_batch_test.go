package realtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
		before := ts.handler.Stats()
		ts.handler.eng.batches.flush()
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
		ts.handler.eng.batches.flush()
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
