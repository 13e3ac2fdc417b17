package realtime

import (
	"net"
	"strings"
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
