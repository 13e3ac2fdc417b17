package realtime

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The original usage: r.Mount("/ws", handler.Routes()) on a chi router.
func TestChiMount(t *testing.T) {
	hub := NewHub(quietLogger())
	h := NewHandler(hub, quietLogger(), HandlerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	r.Mount("/ws", h.Routes())
	srv := httptest.NewServer(r)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	a := dial(t, url, nil)
	b := dial(t, url+"/", nil)
	a.join("r")
	b.join("r")
	b.send(map[string]any{"type": "chat", "room": "r", "data": "via chi"})
	assert.Equal(t, `"via chi"`, string(a.readType(MessageTypeChat).Data))

	resp, err := http.Get(srv.URL + "/ws") // not a WebSocket handshake
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// TLS connections cannot be polled: they get the goroutine fallback and the
// same protocol.
func TestTLSFallback(t *testing.T) {
	hub := NewHub(quietLogger())
	h := NewHandler(hub, quietLogger(), HandlerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { hub.Run(ctx); close(done) }()
	srv := httptest.NewTLSServer(h.Routes())
	defer srv.Close()
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	url := "wss" + strings.TrimPrefix(srv.URL, "https")
	conns := make([]*client, 2)
	for i := range conns {
		c, _, err := dialer.Dial(url, nil)
		require.NoError(t, err)
		conns[i] = &client{t: t, ws: c}
		m := conns[i].read()
		require.Equal(t, MessageTypeSystem, m.Type)
		conns[i].join("r")
	}
	conns[0].readType(MessageTypeJoin)
	for i := range 50 {
		conns[1].send(map[string]any{"type": "chat", "room": "r", "data": i})
	}
	for i := range 50 {
		assert.Equal(t, fmt.Sprint(i), string(conns[0].readType(MessageTypeChat).Data))
	}
	cancel()
	<-done
	for _, c := range conns {
		assert.Equal(t, websocket.CloseGoingAway, c.closeCode())
	}
}

// The server pings; a client that answers stays, one that stays silent is
// closed after PongTimeout.
func TestHeartbeat(t *testing.T) {
	// The answering client has PongTimeout (2 s) to answer pings sent every
	// 200 ms: generous enough for a loaded -race run.
	cfg := HandlerConfig{PingInterval: 200 * time.Millisecond, PongTimeout: 2 * time.Second}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		alive := dial(t, ts.url, nil)
		pings := make(chan struct{}, 100)
		alive.ws.SetPingHandler(func(s string) error {
			pings <- struct{}{}
			return alive.ws.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
		})
		readErr := make(chan error, 1)
		go func() {
			for {
				if _, _, err := alive.ws.ReadMessage(); err != nil {
					readErr <- err
					return
				}
			}
		}()

		// silent: a raw handshake, then nothing at all, not even pongs.
		silent, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
		require.NoError(t, err)
		defer silent.Close()

		// The handshake's answer can come before the hub has registered the
		// connection: see both registered before waiting for one to go.
		require.Eventually(t, func() bool { return ts.hub.ConnectionCount() == 2 || ts.handler.Stats().Timeouts > 0 },
			10*time.Second, time.Millisecond, "the silent connection is registered")
		require.Eventually(t, func() bool { return ts.hub.ConnectionCount() == 1 }, 10*time.Second, 20*time.Millisecond,
			"the silent connection is closed")
		assert.GreaterOrEqual(t, len(pings), 2, "the answering client was pinged")
		select {
		case err := <-readErr:
			t.Fatalf("the answering client was disconnected: %v", err)
		default:
		}
		assert.GreaterOrEqual(t, ts.handler.Stats().Timeouts, uint64(1))
	})
}

// Clients that send half a frame and stall hold no worker: with twice the
// pool's size of them, a normal client still gets everything.
func TestStalledClientsHoldNoWorker(t *testing.T) {
	const workers = 4
	forEachDoor(t, HandlerConfig{Workers: workers}, func(t *testing.T, ts *testServer) {
		for range 2 * workers {
			s := dial(t, ts.url, nil)
			frame := maskedFrame(t, ws.OpText, true, []byte(`{"type":"join","room":"stalled-room"}`))
			s.rawFrame(frame[:len(frame)/2]) // and never the rest
		}
		a := dial(t, ts.url, nil)
		b := dial(t, ts.url, nil)
		a.join("r")
		b.join("r")
		for i := range 20 {
			b.send(map[string]any{"type": "chat", "room": "r", "data": i})
		}
		for i := range 20 {
			assert.Equal(t, fmt.Sprint(i), string(a.readType(MessageTypeChat).Data))
		}
		assert.Equal(t, 0, ts.hub.RoomCount("stalled-room"))
	})
}

// A client that never reads fills its socket and then its queue, and is
// disconnected; every other member still receives every message, in order.
func TestNeverReadingClientIsDisconnected(t *testing.T) {
	cfg := HandlerConfig{SendQueueBytes: 512 << 10, RateLimit: -1, MaxMessageSize: 1 << 20}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		reader := dial(t, ts.url, nil)
		deaf := dial(t, ts.url, nil)
		reader.join("r")
		deaf.join("r")
		reader.readType(MessageTypeJoin)
		deafConn, ok := ts.hub.reg.Get(deaf.id)
		require.True(t, ok)
		payload := strings.Repeat("x", 16<<10)
		const n = 2000 // 32 MB: more than the deaf client's socket buffers hold
		for i := range n {
			ts.hub.Broadcast(&Message{Type: "chat", Room: "r", Data: []byte(fmt.Sprintf(`{"i":%d,"p":%q}`, i, payload))})
			m := reader.readType(MessageTypeChat)
			require.Contains(t, string(m.Data), fmt.Sprintf(`{"i":%d,`, i))
		}
		require.Eventually(t, func() bool { return ts.hub.RoomCount("r") == 1 }, 5*time.Second, 10*time.Millisecond)
		assert.GreaterOrEqual(t, ts.handler.Stats().SlowConsumers, uint64(1))
		assert.False(t, deafConn.SendFrame(&Frame{wire: []byte{0x81, 0}}), "Send returns false once disconnected")
	})
}

// Shutdown: every client gets close 1001 and no goroutine is left.
func TestShutdownClosesWithGoingAway(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, d := range doors {
		ts := newTestServer(t, d, HandlerConfig{})
		var clients []*client
		for range 20 {
			c := dial(t, ts.url, nil)
			c.join("r")
			clients = append(clients, c)
		}
		ts.stop()
		for _, c := range clients {
			assert.Equal(t, websocket.CloseGoingAway, c.closeCode(), "door %s", d)
			c.ws.Close()
		}
		assert.Equal(t, 0, ts.hub.ConnectionCount())
		assert.Equal(t, 0, ts.handler.Connections())
		_, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
		assert.Error(t, err, "no new connections after shutdown")
	}
	http.DefaultClient.CloseIdleConnections()
	assertNoGoroutineLeak(t, before)
}

// assertNoGoroutineLeak waits up to 5 s for the goroutine count to come back
// to before, then fails with every goroutine's stack.
func assertNoGoroutineLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("goroutines: %d before, %d after\n%s", before, n, goroutines())
	}
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// 3,000 idle connections, each in a room, add fewer than 50 goroutines in
// total: none per connection.
func TestIdleConnectionsCostNoGoroutine(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 sockets; run without -short")
	}
	const n = 3000
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			ts := newTestServer(t, d, HandlerConfig{})
			warm := dial(t, ts.url, nil) // start the engine: pool, pollers, wheel
			warm.join("warm")
			base := runtime.NumGoroutine()
			conns := make([]*websocket.Conn, 0, n)
			var mu sync.Mutex
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := range n {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
					if !assert.NoError(t, err) {
						return
					}
					c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"join","room":"room-%d"}`, i%100))
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}()
			}
			wg.Wait()
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			require.Len(t, conns, n)
			require.Eventually(t, func() bool {
				total := 0
				for i := range 100 {
					total += ts.hub.RoomCount(fmt.Sprintf("room-%d", i))
				}
				return total == n
			}, 30*time.Second, 50*time.Millisecond)
			added := runtime.NumGoroutine() - base
			t.Logf("%s door: %d idle joined connections, %d goroutines added", d, n, added)
			assert.Less(t, added, 50)
		})
	}
}

// Regression: a client whose first frame arrives while the server is still
// registering its socket with epoll must go on being read afterwards. (The
// interest used to be recorded after registering, so an event that fired at
// once could leave the descriptor never re-armed: the socket went unread
// until the ping timeout.) A hook holds attach right after registering
// until the client's first frame has arrived and fired its event.
func TestFirstFrameDuringRegistrationKeepsReading(t *testing.T) {
	const n = 20
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			ts := newTestServer(t, d, HandlerConfig{DisableJoinLeaveEvents: true})
			ts.handler.eng.afterRegister = func() { time.Sleep(30 * time.Millisecond) }
			conns := make([]*websocket.Conn, n)
			var wg sync.WaitGroup
			for i := range conns {
				wg.Go(func() {
					c, _, err := websocket.DefaultDialer.Dial(ts.url, nil)
					if !assert.NoError(t, err) {
						return
					}
					c.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"r"}`))
					conns[i] = c
				})
			}
			wg.Wait()
			defer func() {
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
			}()
			require.Eventually(t, func() bool { return ts.hub.RoomCount("r") == n }, 10*time.Second, 10*time.Millisecond)
			// Every connection is still read: a ping gets its pong.
			for i, c := range conns {
				require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)))
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					var m Message
					require.NoError(t, c.ReadJSON(&m), "connection %d", i)
					if m.Type == MessageTypePong {
						break
					}
				}
			}
		})
	}
}
