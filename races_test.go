package realtime

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/fake"
)

// Regression: a connection that cannot be polled (TLS) got a second writer
// for the frames queued before its reader started (the greeting), so it got
// its "connected" message twice, and two writers could corrupt its stream.
// Each of 300 TLS clients, dialling at once, gets exactly one greeting
// before its pong.
func TestTLSConnectionHasOneWriter(t *testing.T) {
	hub := NewHub(quietLogger())
	h := NewHandler(hub, quietLogger(), HandlerConfig{})
	srv := httptest.NewTLSServer(h.Routes())
	defer srv.Close()
	defer h.Shutdown(context.Background())
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	var wg sync.WaitGroup
	for range 300 {
		wg.Go(func() {
			ws, _, err := dialer.Dial(url, nil)
			if !assert.NoError(t, err) {
				return
			}
			defer ws.Close()
			ws.WriteJSON(map[string]string{"type": "ping"})
			greetings := 0
			for {
				ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				var m Message
				if !assert.NoError(t, ws.ReadJSON(&m)) {
					return
				}
				if m.Type == MessageTypeSystem {
					greetings++
				}
				if m.Type == MessageTypePong {
					break
				}
			}
			assert.Equal(t, 1, greetings)
		})
	}
	wg.Wait()
}

// Regression: a join that ran on the command pool (AuthorizeJoin waited)
// could land after its connection was gone, leaving the room a member that
// no longer exists (and its presence count one too high).
func TestJoinAfterDisconnectLeavesNoGhost(t *testing.T) {
	hub := fake.NewNaiveHub[Connection](func(m *Message) string { return m.Room })
	hookIn := make(chan struct{}, 1)
	release := make(chan struct{})
	h := NewHandler(hub, quietLogger(), HandlerConfig{AuthorizeJoin: func(_, room string) error {
		hookIn <- struct{}{}
		<-release
		return nil
	}})
	srv := httptest.NewServer(h.Routes())
	defer srv.Close()
	defer h.Shutdown(context.Background())
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	require.NoError(t, ws.WriteJSON(map[string]string{"type": "join", "room": "r"}))
	<-hookIn
	ws.UnderlyingConn().Close() // gone while the hook runs
	require.Eventually(t, func() bool { return hub.ConnectionCount() == 0 }, 5*time.Second, 10*time.Millisecond)
	close(release)
	time.Sleep(100 * time.Millisecond) // the join, if it were to land, lands now
	assert.Equal(t, 0, hub.RoomCount("r"), "no member left behind")
}
