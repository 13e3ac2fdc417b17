package realtime

// The raw door's held 101 (the preface): regression tests from a review of
// it; each failed before its fix.

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const prefaceHandshake = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// prefaceClientFrame is a masked client text frame.
func prefaceClientFrame(payload []byte) []byte {
	var b []byte
	b = append(b, 0x81)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// prefaceRawConnect sends the handshake with extra bytes right behind it (one
// write) and returns the first bytes the server sends.
func prefaceRawConnect(t *testing.T, ts *testServer, extra []byte) []byte {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws")
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	_, err = nc.Write(append([]byte(prefaceHandshake), extra...))
	require.NoError(t, err)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := nc.Read(buf)
	return buf[:n]
}

// A client that recovers with since, its join sent right behind its
// handshake (as the storm bench does), into a room whose replay passes
// SendQueueBytes: it is a slow consumer before the first flush, and the
// backlog drop takes the held 101 with it. The client must still get the
// HTTP response (then the 1008 close), not a close frame in its place.
func TestPrefaceSurvivesOverflowBeforeFirstFlush(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{RateLimit: -1}) // defaults: 1 MiB queue, 100 messages of history
	big, _ := json.Marshal(strings.Repeat("x", 12<<10))
	var epoch string
	for range 100 {
		msg := &Message{Type: MessageTypeChat, Room: "r", Data: big}
		require.NoError(t, ts.handler.Publish(context.Background(), msg))
		epoch = msg.Epoch
	}
	join, _ := json.Marshal(map[string]any{"type": "join", "room": "r",
		"data": map[string]any{"since": map[string]any{"offset": 0, "epoch": epoch}}})
	got := prefaceRawConnect(t, ts, prefaceClientFrame(join))
	assert.True(t, bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")), "first bytes: %q", got)
}

// The held 101 takes no place in the send queue's bounds: with
// SendQueueSize 2 a join pipelined behind the handshake fits (greeting,
// ack), as through the HTTP door.
func TestPrefaceOutsideSendQueueBounds(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{SendQueueSize: 2})
	got := prefaceRawConnect(t, ts, prefaceClientFrame([]byte(`{"type":"join","room":"r"}`)))
	assert.True(t, bytes.HasPrefix(got, []byte("HTTP/1.1 101 ")), "first bytes: %q", got)
	assert.Zero(t, ts.handler.Stats().SlowConsumers)
}

// failWriteConn cannot be polled (no syscall.Conn: as a TLS conn or a
// wrapping listener's conn) and its writes fail (the peer reset).
type failWriteConn struct{ net.Conn }

func (failWriteConn) Write([]byte) (int, error) { return 0, syscall.EPIPE }

type failWriteListener struct{ net.Listener }

func (l failWriteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return failWriteConn{c}, nil
}

// slowRegisterHub registers slowly: it widens the window between attach's
// enqueue of the 101 (which, for a connection that cannot be polled, starts
// its writer goroutine at once) and the registration.
type slowRegisterHub struct{ *ShardedHub }

func (h slowRegisterHub) Register(c Connection) {
	time.Sleep(300 * time.Millisecond)
	h.ShardedHub.Register(c)
}

// A raw-door connection that cannot be polled gets its 101 at once: queued,
// it started the writer before the connection was registered, and a failed
// write tore it down (detach) before attach registered it, which then left
// a closed connection in the hub, the heartbeat wheel and the user index
// (the user online for good).
func TestFallbackPrefaceBeforeRegister(t *testing.T) {
	hub := NewHub(quietLogger())
	h := NewHandler(slowRegisterHub{hub}, quietLogger(), HandlerConfig{
		Authenticate: func(*http.Request) (string, error) { return "ghost", nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { hub.Run(ctx); close(ran) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() { h.Serve(failWriteListener{ln}); close(served) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		h.Shutdown(sctx)
		cancel()
		<-ran
		ln.Close()
		<-served
	})

	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte(prefaceHandshake))
	require.NoError(t, err)

	require.Eventually(t, func() bool { return h.Stats().Closed == 1 }, 5*time.Second, 5*time.Millisecond, "the failed write tears the connection down")
	time.Sleep(500 * time.Millisecond) // attach finishes (Register, arrived)
	assert.Zero(t, hub.ConnectionCount(), "a closed connection left in the hub")
	assert.Zero(t, h.Stats().Users, "a closed connection's user left online")
	assert.Empty(t, h.eng.hb.all(), "a closed connection left in the heartbeat wheel")
}

// A handshake that was admitted just before Shutdown began, and reached
// attach after, gets what the drain gives: its 101 and a close 1001 with a
// reconnect hint (before, the socket was closed with nothing sent, not even
// the 101), on either door.
func TestUpgradeDuringShutdownGetsGoingAway(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		held, release := make(chan struct{}), make(chan struct{})
		ts.handler.cfg.Authenticate = func(r *http.Request) (string, error) {
			close(held)
			<-release // Shutdown begins meanwhile
			return "u", nil
		}
		assertGoingAway(t, shutdownWhileHeld(t, ts, held, release, 0))
	})
}

// An HTTP-door upgrade in progress when Shutdown begins is waited for, as
// the raw door's handshakes are, and then drained: a 1001 with a reconnect
// hint. Before (found by a review), one that registered after the drain
// took its list was left out of it and torn down without a close frame
// when Shutdown ended.
func TestUpgradeRegisteredAfterDrainGetsGoingAway(t *testing.T) {
	ts := newTestServer(t, httpDoor, HandlerConfig{})
	held, release := make(chan struct{}), make(chan struct{})
	ts.handler.eng.beforeRegister = func() {
		close(held)
		<-release
	}
	// The pause gives a drain that does not wait for the upgrade the time
	// to take its list without it.
	assertGoingAway(t, shutdownWhileHeld(t, ts, held, release, 100*time.Millisecond))
}

// shutdownWhileHeld dials ts; once a hook of the upgrade has closed held
// (and waits for release), it starts Shutdown, lets the hook go pause after
// Shutdown began, and returns how the client's connection ended (its first
// error reading), after Shutdown returned.
func shutdownWhileHeld(t *testing.T, ts *testServer, held <-chan struct{}, release chan<- struct{}, pause time.Duration) error {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		ws, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
		if err != nil {
			got <- err
			return
		}
		defer ws.Close()
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		for err == nil {
			_, _, err = ws.ReadMessage()
		}
		got <- err
	}()
	select {
	case <-held:
	case err := <-got:
		t.Fatalf("the upgrade ended before the hook held it: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the upgrade never reached the hook")
	}
	done := make(chan error, 1)
	go func() { done <- ts.handler.Shutdown(context.Background()) }()
	for !ts.handler.eng.stopping.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(pause)
	close(release)
	err := <-got
	require.NoError(t, <-done)
	return err
}

// assertGoingAway checks that a connection ended with the drain's close:
// 1001 and a reconnect hint.
func assertGoingAway(t *testing.T, err error) {
	t.Helper()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce, "a close frame after the 101, not a dropped socket")
	assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	assert.Contains(t, ce.Text, "reconnect_ms=")
}
