package realtime

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The raw door's 101 and the greeting leave in one write: the client's
// first read holds both (one write to a loopback socket arrives whole). The
// counters leave the 101 out: one frame, its bytes.
func TestRawDoorSendsResponseWithGreeting(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{})
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws")
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	require.NoError(t, err)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := nc.Read(buf)
	require.NoError(t, err)
	got := string(buf[:n])
	require.True(t, strings.HasPrefix(got, "HTTP/1.1 101 "), "%q", got)
	head, frame, ok := strings.Cut(got, "\r\n\r\n")
	require.True(t, ok)
	assert.Contains(t, head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
	require.Greater(t, len(frame), 2, "the greeting came in the same read as the 101")
	assert.Equal(t, byte(0x81), frame[0], "a text frame")
	assert.Contains(t, frame, `"event":"connected"`)

	require.Eventually(t, func() bool { return ts.handler.Stats().FramesOut == 1 }, 5*time.Second, 10*time.Millisecond)
	st := ts.handler.Stats()
	assert.Equal(t, uint64(len(frame)), st.BytesOut, "bytes after the handshake")
	assert.Equal(t, uint64(1), st.Writes)
}

// The raw door upgrades a request whose head arrived whole from one read,
// without waiting; a head that comes in pieces, or is longer than that read,
// is read on under HandshakeTimeout, and upgraded the same. A client that
// connects and only later sends its request is not accepted before it does
// (TCP_DEFER_ACCEPT), so its head too arrives whole.
func TestRawHandshakeWholeOrInPieces(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{})
	// A connection made before Serve set TCP_DEFER_ACCEPT may be accepted
	// before its request arrives: one whole connection first.
	dial(t, ts.url, nil).ws.Close()
	var waits atomic.Int32
	hook := func() { waits.Add(1) }
	ts.handler.eng.rawHandshakeWaits.Store(&hook)
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws")
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	long := "X-Long: " + strings.Repeat("l", 2*peekSize) + "\r\n"
	for _, tc := range []struct {
		name   string
		pieces []string
		waits  int32
	}{
		{"whole", []string{req + "\r\n"}, 0},
		{"in pieces", []string{req[:20], req[20:] + "\r", "\n"}, 1},
		{"nothing at first", []string{"", req + "\r\n"}, 0}, // TCP_DEFER_ACCEPT: not accepted before it sends
		{"longer than one read", []string{req + long + "\r\n"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waits.Store(0)
			nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err)
			defer nc.Close()
			for i, p := range tc.pieces {
				if i > 0 && tc.waits > 0 { // the server read the first piece alone
					require.Eventually(t, func() bool { return waits.Load() > 0 }, 5*time.Second, time.Millisecond)
				} else if i > 0 {
					time.Sleep(30 * time.Millisecond)
				}
				_, err = nc.Write([]byte(p))
				require.NoError(t, err)
			}
			got := readUntil(t, nc, `"event":"connected"`)
			assert.True(t, strings.HasPrefix(got, "HTTP/1.1 101 "), "%q", got)
			assert.Equal(t, tc.waits, waits.Load())
		})
	}
}

// readUntil reads from nc until what arrived contains want (5 s at most).
func readUntil(t *testing.T, nc net.Conn, want string) string {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), want) {
		n, err := nc.Read(buf)
		got = append(got, buf[:n]...)
		require.NoError(t, err, "read so far: %q", got)
	}
	return string(got)
}

// Regression: a client that sends part of its request and then resets the
// connection must not crash the server. The head is incomplete, so the
// handshake goes on as a net.Conn, whose peer address net.FileConn leaves
// nil once the socket is reset; the handshake took the address from it.
func TestRawHandshakeResetAfterPartialRequest(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{})
	dial(t, ts.url, nil).ws.Close() // Serve has set TCP_DEFER_ACCEPT
	addr := strings.TrimSuffix(strings.TrimPrefix(ts.url, "ws://"), "/ws")
	for range 20 {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		_, err = nc.Write([]byte("GET /ws HTTP/1.1\r\n"))
		require.NoError(t, err)
		nc.(*net.TCPConn).SetLinger(0) // close with a reset
		nc.Close()
	}
	time.Sleep(100 * time.Millisecond)
	dial(t, ts.url, nil) // still serving
}
