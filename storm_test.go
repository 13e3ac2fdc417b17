package realtime

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Past AcceptRate, both doors answer 503 with a Retry-After of 1–3 s, and
// count it.
func TestAdmissionControl(t *testing.T) {
	forEachDoor(t, HandlerConfig{AcceptRate: 0.01, AcceptBurst: 2}, func(t *testing.T, ts *testServer) {
		dial(t, ts.url, nil)
		dial(t, ts.url, nil)
		_, resp, err := websocket.DefaultDialer.Dial(ts.url, nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
		assert.Contains(t, []string{"1", "2", "3"}, resp.Header.Get("Retry-After"))
		assert.Equal(t, uint64(1), ts.handler.Stats().Throttled)

		// A browser cannot read a 503: it is upgraded, then closed with
		// 1013 (Try Again Later) and a reconnect hint.
		origin := "http://" + strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws")
		ws, _, err := websocket.DefaultDialer.Dial(ts.url, http.Header{"Origin": {origin}})
		require.NoError(t, err)
		defer ws.Close()
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 1013, ce.Code)
		assert.Regexp(t, `^try again later; reconnect_ms=\d+$`, ce.Text)
		assert.Equal(t, uint64(2), ts.handler.Stats().Throttled)
	})
}

// Shutdown closes connections in batches, DrainRate per second, each with
// 1001 and a reconnect hint: 10 connections at 20 per second come down over
// at least 0.3 s (5 batches of 2, 100 ms apart), not at once.
func TestStaggeredDrain(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{DrainRate: 20})
	type closed struct {
		at     time.Time
		code   int
		reason string
	}
	var mu sync.Mutex
	var got []closed
	var wg sync.WaitGroup
	for range 10 {
		c := dial(t, ts.url, nil)
		wg.Go(func() {
			for {
				c.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
				if _, _, err := c.ws.ReadMessage(); err != nil {
					ce, _ := err.(*websocket.CloseError)
					mu.Lock()
					defer mu.Unlock()
					if ce != nil {
						got = append(got, closed{time.Now(), ce.Code, ce.Text})
					}
					return
				}
			}
		})
	}
	ts.stop()
	wg.Wait()
	require.Len(t, got, 10)
	first, last := got[0].at, got[0].at
	for _, c := range got {
		assert.Equal(t, websocket.CloseGoingAway, c.code)
		assert.True(t, strings.HasPrefix(c.reason, "server shutting down; reconnect_ms="), c.reason)
		if c.at.Before(first) {
			first = c.at
		}
		if c.at.After(last) {
			last = c.at
		}
	}
	assert.GreaterOrEqual(t, last.Sub(first), 300*time.Millisecond, "closes spread over the drain")
}

// Past JoinEventsMaxMembers, joins and leaves reach the room as one
// members_diff per window, not an event per member; small rooms keep their
// single join and leave events. The joiner of a big room still gets its
// acknowledgement.
func TestBigRoomGetsMembersDiff(t *testing.T) {
	forEachDoor(t, HandlerConfig{JoinEventsMaxMembers: 2, JoinEventsWindow: 50 * time.Millisecond, Authenticate: userAuth},
		func(t *testing.T, ts *testServer) {
			a, b, c := dial(t, ts.url, as("ua")), dial(t, ts.url, as("ub")), dial(t, ts.url, as("uc"))
			a.join("r")
			b.join("r")
			assert.Contains(t, string(a.readType(MessageTypeJoin).Data), `"ub"`, "small room: a single event")
			c.join("r") // the third member: the room is big now
			m := a.read()
			require.Equal(t, MessageTypeMembersDiff, m.Type, "no join event for the third member: %+v", m)
			assert.JSONEq(t, `{"joined":1,"left":0}`, string(m.Data))
			assert.Equal(t, "r", m.Room)
			c.send(map[string]string{"type": "leave", "room": "r"}) // back to two: a single event
			assert.Contains(t, string(a.readType(MessageTypeLeave).Data), `"uc"`)
		})
}

// A room of more members than MembersDiffMaxFrames gets its members_diff
// every ceil(members / MembersDiffMaxFrames) windows, with all that joined
// meanwhile: here one frame per window per room, so a room of 3 at the end
// of its diff's first window waits 3 windows, though it grows meanwhile (a
// wait read again each window would never end while a room grows by a
// member a window).
func TestHugeRoomGetsMembersDiffEverySeveralWindows(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{JoinEventsMaxMembers: 1, MembersDiffMaxFrames: 1,
		JoinEventsWindow: time.Hour, Authenticate: userAuth}) // windows end when the test says
	a, b, c := dial(t, ts.url, as("ua")), dial(t, ts.url, as("ub")), dial(t, ts.url, as("uc"))
	a.join("r")
	b.join("r") // the room is big from the second member on: counted
	c.join("r")
	ts.handler.eng.startOnce.Do(func() {}) // orders this read after the engine's start
	events := ts.handler.eng.events
	events.flush(false) // window 1 of 3
	for _, u := range []string{"ud", "ue"} {
		dial(t, ts.url, as(u)).join("r") // 4, then 5 members
		events.flush(false)              // windows 2 and 3
	}
	m := a.read() // the first members_diff a gets: none was sent before the third window
	require.Equal(t, MessageTypeMembersDiff, m.Type, "%+v", m)
	assert.JSONEq(t, `{"joined":4,"left":0}`, string(m.Data))
	events.mu.Lock()
	assert.Empty(t, events.diffs, "nothing left to send")
	events.mu.Unlock()

	c.send(map[string]string{"type": "leave", "room": "r"})
	c.readType(MessageTypeLeave) // its acknowledgement: it has left
	events.flush(true)           // as when shutting down: what waits goes, whatever its windows
	m = a.read()
	require.Equal(t, MessageTypeMembersDiff, m.Type, "%+v", m)
	assert.JSONEq(t, `{"joined":0,"left":1}`, string(m.Data))
}

// The number of windows between a room's members_diffs.
func TestWindowsPerDiff(t *testing.T) {
	h := &Handler{cfg: HandlerConfig{MembersDiffMaxFrames: 1000}}
	for n, want := range map[int]int{0: 1, 51: 1, 1000: 1, 1001: 2, 2500: 3, 10_000: 10, 19_000: 19} {
		assert.Equal(t, want, h.windowsPerDiff(n), "%d members", n)
	}
	h.cfg.MembersDiffMaxFrames = -1
	assert.Equal(t, 1, h.windowsPerDiff(1_000_000), "negative: every window")
}

// A member asks who is in a room; a non-member is refused.
func TestMembersQuery(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth}, func(t *testing.T, ts *testServer) {
		a, b, c := dial(t, ts.url, as("ub")), dial(t, ts.url, as("ua")), dial(t, ts.url, as("uc"))
		a.join("r")
		b.join("r")
		a.send(map[string]string{"type": "members", "room": "r"})
		m := a.readType(MessageTypeMembers)
		assert.JSONEq(t, `{"count":2,"users":["ua","ub"],"members":[{"user_id":"ua","connections":1,"status":"online"},{"user_id":"ub","connections":1,"status":"online"}]}`, string(m.Data))
		c.send(map[string]string{"type": "members", "room": "r"})
		assert.Equal(t, ErrCodeNotInRoom, c.readError())
	})
}

// With Redis, the roster covers every pod (the broadcaster is a Roster).
func TestMembersQueryAcrossPods(t *testing.T) {
	srv := redistest.Start(t)
	pa, pb := startPod(t, "a", redistest.Client(t, srv.Addr)), startPod(t, "b", redistest.Client(t, srv.Addr))
	a, b := dial(t, pa.url, as("ua")), dial(t, pb.url, as("ub"))
	a.join("r")
	b.join("r")
	var got string
	for range 50 {
		a.send(map[string]string{"type": "members", "room": "r"})
		if got = string(a.readType(MessageTypeMembers).Data); got == `{"count":2,"users":["ua","ub"],"members":[{"user_id":"ua","connections":1,"status":"online"},{"user_id":"ub","connections":1,"status":"online"}]}` {
			break
		}
		time.Sleep(50 * time.Millisecond) // presence is written asynchronously
	}
	assert.JSONEq(t, `{"count":2,"users":["ua","ub"],"members":[{"user_id":"ua","connections":1,"status":"online"},{"user_id":"ub","connections":1,"status":"online"}]}`, got)
}
