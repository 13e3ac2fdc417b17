package realtime

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Regression (issue 9, defect 1): a stalled Redis does not freeze the pod.
// Publishing used to run on the socket workers and wait up to 5 s per
// message, so with Redis stopped a sender's next messages, other clients'
// pings and new connections all waited for those time-outs. Now pings,
// joins and new connections go on while the publishes wait in the
// pipeline, and each message that could not reach Redis is answered with
// publish_failed. (Each step below is checked to happen before any publish
// failed: before the first time-out.) Local delivery goes on for rooms
// without history; a room that keeps history (the default) delivers a
// message, on every pod, only once Redis gave it its offset, so that no pod
// delivers what the others never get (issue 10).
func TestRedisStallLeavesPodResponsive(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("history=", keep), func(t *testing.T) {
			var opts []BroadcasterOption
			if !keep {
				opts = append(opts, WithHistory(-1, 0))
			}
			srv := redistest.Start(t)
			a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PublishTimeout: 2 * time.Second}, opts...)
			a1, a2 := dial(t, a.url, as("a1")), dial(t, a.url, as("a2"))
			a1.join("r")
			a2.join("r")
			a1.readType(MessageTypeJoin) // a2's join event
			waitListening(t, "r", a)

			srv.Stop()
			defer srv.Continue()
			const n = 20
			for i := range n {
				a1.send(map[string]any{"type": "chat", "room": "r", "data": i})
			}
			if !keep {
				for i := range n {
					assert.Equal(t, fmt.Sprint(i), string(a2.readType(MessageTypeChat).Data), "local delivery goes on")
				}
			}
			late := dial(t, a.url, as("late")) // a new connection is answered
			late.join("r")                     // (a room new to the pod, with history, waits for Redis)
			late.send(map[string]string{"type": "ping"})
			late.readType(MessageTypePong)
			a2.send(map[string]string{"type": "ping"})
			a2.readType(MessageTypePong) // with history, a2 got no chat meanwhile
			assert.Zero(t, a.h.Stats().PublishErrors, "all of the above happened before the first publish timed out")

			for range n { // every message that did not reach Redis is reported
				assert.Equal(t, ErrCodePublishFailed, a1.readError())
			}
			srv.Continue()
			require.Eventually(t, func() bool { return a.rb.Ready() == nil }, 10*time.Second, 20*time.Millisecond)
		})
	}
}

// A full pipeline answers publish_failed at once, without waiting for Redis.
func TestPublishPipelineFullFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PublishTimeout: time.Minute, PublishQueueSize: 1})
	a1 := dial(t, a.url, as("a1"))
	a1.join("r")
	waitListening(t, "r", a)
	srv.Stop()
	defer srv.Continue()
	for i := range 10 {
		a1.send(map[string]any{"type": "chat", "room": "r", "data": i})
	}
	// One message is in flight and one waits in its lane: the others are
	// refused now, long before the minute-long publish timeout.
	for range 8 {
		assert.Equal(t, ErrCodePublishFailed, a1.readError())
	}
}

// Regression (issue 9, defect 9): with Redis, a direct message to a pod that
// does not exist was dropped silently; it gets not_found, as on one pod.
func TestDirectToUnknownPodIsNotFound(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	a1 := dial(t, a.url, as("a1"))
	b1 := dial(t, b.url, as("b1"))
	a1.send(map[string]any{"type": "chat", "to": "nosuchpod.1", "data": "x"})
	assert.Equal(t, ErrCodeNotFound, a1.readError())
	a1.send(map[string]any{"type": "chat", "to": b1.id, "data": "y"}) // a live target still works
	assert.Equal(t, `"y"`, string(b1.readType(MessageTypeChat).Data))
}

// Regression (issue 9, defect 1, hooks): an AuthorizeJoin hook that waits
// (a database call) does not hold the socket workers: with one worker, a
// join stuck in the hook used to stop every other client's ping. Commands of
// one connection still run in order: the chat sent after the stuck join
// follows it.
func TestSlowHookHoldsNoWorker(t *testing.T) {
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			release := make(chan struct{})
			cfg := HandlerConfig{Workers: 1, RateLimit: -1, AuthorizeJoin: func(_, room string) error {
				if room == "slow" {
					<-release
				}
				return nil
			}}
			ts := newTestServer(t, d, cfg)
			a, b := dial(t, ts.url, nil), dial(t, ts.url, nil)
			a.send(map[string]any{"type": "join", "room": "slow"})
			a.send(map[string]any{"type": "chat", "room": "slow", "data": "after the join"})
			b.send(map[string]string{"type": "ping"})
			b.readType(MessageTypePong) // while a's join waits in the hook
			close(release)
			assert.Equal(t, "slow", a.readType(MessageTypeJoin).Room)
			assert.Equal(t, `"after the join"`, string(a.readType(MessageTypeChat).Data))
		})
	}
}

// Regression (issue 9, defect 11): readiness falls within a second of the
// pub/sub link breaking (it answered ready for 2.3 s into an outage).
func TestReadinessFallsWithinASecond(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	require.NoError(t, a.rb.Ready())
	srv.Kill()
	time.Sleep(time.Second)
	assert.Error(t, a.rb.Ready(), "a second after Redis went away")
	srv.Restart()
	require.Eventually(t, func() bool { return a.rb.Ready() == nil }, 10*time.Second, 20*time.Millisecond)
}

// Regression (issue 9, defect 2): a half-sent handshake on the raw door does
// not hold Shutdown. Shutdown waited for its HandshakeTimeout (10 s), past
// its own deadline (5 s), and then dropped every client without 1001.
func TestHalfHandshakeDoesNotHoldShutdown(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{})
	half, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws"))
	require.NoError(t, err)
	defer half.Close()
	_, err = half.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)
	var clients []*client
	for range 20 {
		c := dial(t, ts.url, nil)
		c.join("r")
		clients = append(clients, c)
	}
	ts.stop()
	for _, c := range clients {
		assert.Equal(t, websocket.CloseGoingAway, c.closeCode())
	}
}

// Regression (issue 9, defect 4): both doors refuse more than
// MaxHandshakeBytes of headers with 431 (the net/http door took 1 MiB).
func TestHandshakeTooLarge(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		h := http.Header{"X-Big": {strings.Repeat("b", MaxHandshakeBytes+1)}}
		_, resp, err := websocket.DefaultDialer.Dial(ts.url, h)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
		ok := http.Header{"X-Fine": {strings.Repeat("f", MaxHandshakeBytes/2)}}
		c, _, err := websocket.DefaultDialer.Dial(ts.url, ok)
		require.NoError(t, err)
		c.Close()
	})
}
