package realtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Presence that is true across pods: offline only when a user's last
// connection anywhere is gone, after a debounce; online when it comes back.

// untilPong pings c and returns the messages it got before the pong.
func untilPong(c *client) []Message {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	var got []Message
	for range 100 {
		m := c.read()
		if m.Type == MessageTypePong {
			return got
		}
		got = append(got, m)
	}
	c.t.Fatal("no pong")
	return nil
}

// presenceOf returns the statuses of user in msgs, in order.
func presenceOf(t *testing.T, msgs []Message, user string) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		if m.Type != MessageTypePresence {
			continue
		}
		var d PresenceData
		require.NoError(t, json.Unmarshal(m.Data, &d))
		if d.UserID == user {
			out = append(out, d.Status)
		}
	}
	return out
}

// waitPresence reads c until user's presence status arrives, collecting
// other statuses of user on the way.
func waitPresence(t *testing.T, c *client, user, status string) {
	t.Helper()
	for range 100 {
		m := c.readType(MessageTypePresence)
		var d PresenceData
		require.NoError(t, json.Unmarshal(m.Data, &d))
		if d.UserID == user {
			require.Equal(t, status, d.Status)
			return
		}
	}
	t.Fatalf("no %s for %s", status, user)
}

func TestNoFalseOfflineAcrossPods(t *testing.T) {
	srv := redistest.Start(t)
	const debounce = 100 * time.Millisecond
	a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
	b := startPodWith(t, "b", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
	bob := dial(t, a.url, as("bob"))
	bob.joinSince("r", nil)
	onA, onB := dial(t, a.url, as("alice")), dial(t, b.url, as("alice"))
	onA.joinSince("r", nil)
	onB.joinSince("r", nil)
	waitListening(t, "r", a, b)

	// alice's socket on b closes; she is still on a: a leave, no offline.
	onB.ws.Close()
	bob.readType(MessageTypeLeave)
	time.Sleep(4 * debounce)
	assert.Empty(t, presenceOf(t, untilPong(bob), "alice"), "alice is still connected on pod a")

	// Her last socket closes: offline, once, not before the debounce.
	closed := time.Now()
	onA.ws.Close()
	waitPresence(t, bob, "alice", PresenceOffline)
	assert.GreaterOrEqual(t, time.Since(closed), debounce)
	time.Sleep(4 * debounce)
	assert.Empty(t, presenceOf(t, untilPong(bob), "alice"), "one offline, from one pod")

	// She comes back on the other pod: the room hears she is online.
	back := dial(t, b.url, as("alice"))
	waitPresence(t, bob, "alice", PresenceOnline)
	back.joinSince("r", nil)
}

func TestPresenceDebounce(t *testing.T) {
	const debounce = 300 * time.Millisecond
	t.Run("one pod", func(t *testing.T) {
		ts := newTestServer(t, httpDoor, HandlerConfig{Authenticate: userAuth, PresenceDebounce: debounce})
		presenceDebounce(t, debounce, ts.url, ts.url)
	})
	t.Run("two pods", func(t *testing.T) {
		srv := redistest.Start(t)
		a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
		b := startPodWith(t, "b", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
		presenceDebounce(t, debounce, a.url, b.url)
	})
}

// presenceDebounce: alice reloads (closes and reconnects within the
// debounce, through the second URL): no offline, no online. She leaves for
// good: offline after the debounce. She comes back: online.
func presenceDebounce(t *testing.T, debounce time.Duration, url1, url2 string) {
	bob := dial(t, url1, as("bob"))
	bob.joinSince("r", nil)
	alice := dial(t, url1, as("alice"))
	alice.joinSince("r", nil)
	time.Sleep(50 * time.Millisecond) // the join reached the other pod's roster

	alice.ws.Close()
	time.Sleep(debounce / 3)
	alice = dial(t, url2, as("alice"))
	alice.joinSince("r", nil)
	time.Sleep(2 * debounce)
	assert.Empty(t, presenceOf(t, untilPong(bob), "alice"), "a reload is no flap")

	closed := time.Now()
	alice.ws.Close()
	waitPresence(t, bob, "alice", PresenceOffline)
	assert.GreaterOrEqual(t, time.Since(closed), debounce)

	dial(t, url1, as("alice"))
	waitPresence(t, bob, "alice", PresenceOnline)
}

func TestMembersRosterAcrossPods(t *testing.T) {
	_, _, alice1, _, bob := aliceTwiceAndBob(t)
	bob.send(map[string]any{"type": "presence", "data": map[string]string{"status": "away"}})
	want := MembersData{Count: 2, Users: []string{"alice", "bob"}, Members: []MemberInfo{
		{UserID: "alice", Connections: 2, Status: PresenceOnline},
		{UserID: "bob", Connections: 1, Status: PresenceAway},
	}}
	require.Eventually(t, func() bool {
		alice1.send(map[string]any{"type": "members", "room": "r"})
		var got MembersData
		require.NoError(t, json.Unmarshal(alice1.readType(MessageTypeMembers).Data, &got))
		return assert.ObjectsAreEqual(want, got)
	}, 5*time.Second, 50*time.Millisecond, "the roster counts both pods, with statuses")
}
