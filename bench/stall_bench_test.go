package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// stallPod is one in-process pod: hub, Redis broadcaster, handler, server.
type stallPod struct{ url string }

func startStallPod(b *testing.B, name, redisAddr string) stallPod {
	logger := slog.New(slog.DiscardHandler)
	hub := realtime.NewHub(logger)
	rb := realtime.NewRedisBroadcaster(redisClientDelay(b, redisAddr, false, 20*time.Microsecond), hub, logger, realtime.WithPodID(name))
	h := realtime.NewHandler(hub, logger, realtime.HandlerConfig{Broadcaster: rb}) // defaults
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { hub.Run(ctx) })
	wg.Go(func() { rb.Run(ctx) })
	srv := httptest.NewServer(h.Routes())
	b.Cleanup(func() { cancel(); wg.Wait(); srv.Close() })
	require.Eventually(b, func() bool { return rb.Ready() == nil }, 10*time.Second, 20*time.Millisecond)
	return stallPod{url: "ws" + strings.TrimPrefix(srv.URL, "http")}
}

// stallClient is a WebSocket client whose reader goroutine hands each
// message to onMsg.
type stallClient struct {
	ws *websocket.Conn
	mu sync.Mutex // one writer at a time
}

func dialStall(b *testing.B, url string, onMsg func(realtime.Message)) *stallClient {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(b, err)
	c := &stallClient{ws: ws}
	b.Cleanup(func() { ws.Close() })
	go func() {
		for {
			var m realtime.Message
			if ws.ReadJSON(&m) != nil {
				return
			}
			onMsg(m)
		}
	}()
	return c
}

func (c *stallClient) send(v any) {
	c.mu.Lock()
	c.ws.WriteJSON(v)
	c.mu.Unlock()
}

// BenchmarkRedisStall: two pods linked by a redis-server, clients on pod a
// publishing to rooms that members on both pods are in (20 publishers, 10
// messages per second each), and Redis frozen (SIGSTOP) for 10 s in the
// middle. Reported for pod a, during the stall: the round trip of a client
// that only pings (p50, p99, max), how long new connections wait for their
// "connected" message and their join acknowledgement (max), and the
// messages local members received; over the whole run: messages sent, those
// that reached pod b, those answered publish_failed, and lost = sent −
// reached − failed (none may vanish silently). Run it with -benchtime 1x.
func BenchmarkRedisStall(b *testing.B) {
	const publishers, rooms, rate, stall = 20, 5, 10, 10 * time.Second
	srv := redistest.Start(b)
	pa, pb := startStallPod(b, "a", srv.Addr), startStallPod(b, "b", srv.Addr)
	var stalled atomic.Bool
	var localDuringStall, reachedB atomic.Int64
	failed := make([]atomic.Int64, publishers)
	join := func(c *stallClient) {
		for r := range rooms {
			c.send(map[string]string{"type": "join", "room": fmt.Sprint("r", r)})
		}
	}
	join(dialStall(b, pb.url, func(m realtime.Message) {
		if m.Type == realtime.MessageTypeChat {
			reachedB.Add(1)
		}
	}))
	join(dialStall(b, pa.url, func(m realtime.Message) {
		if m.Type == realtime.MessageTypeChat && stalled.Load() {
			localDuringStall.Add(1)
		}
	}))
	pubs := make([]*stallClient, publishers)
	for i := range pubs {
		pubs[i] = dialStall(b, pa.url, func(m realtime.Message) {
			var e realtime.ErrorData
			if m.Type == realtime.MessageTypeError && json.Unmarshal(m.Data, &e) == nil && e.Code == realtime.ErrCodePublishFailed {
				failed[i].Add(1)
			}
		})
		pubs[i].send(map[string]string{"type": "join", "room": fmt.Sprint("r", i%rooms)})
	}
	time.Sleep(time.Second) // joins and subscriptions settle
	for b.Loop() {
		var sent atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i, p := range pubs {
			wg.Go(func() {
				t := time.NewTicker(time.Second / rate)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						p.send(map[string]any{"type": "chat", "room": fmt.Sprint("r", i%rooms), "data": i})
						sent.Add(1)
					}
				}
			})
		}
		time.Sleep(2 * time.Second)
		srv.Stop()
		stalled.Store(true)
		rtts, connects := probeDuringStall(b, pa.url, stall)
		stalled.Store(false)
		srv.Continue()
		time.Sleep(2 * time.Second)
		close(stop)
		wg.Wait()
		time.Sleep(17 * time.Second) // publishes in flight succeed or time out
		var nFailed int64
		for i := range failed {
			nFailed += failed[i].Load()
		}
		b.ReportMetric(pct(rtts, 50), "ping-p50-ms")
		b.ReportMetric(pct(rtts, 99), "ping-p99-ms")
		b.ReportMetric(pct(rtts, 100), "ping-max-ms")
		b.ReportMetric(pct(connects, 100), "connect-max-ms")
		b.ReportMetric(float64(localDuringStall.Load()), "local-deliveries-in-stall")
		b.ReportMetric(float64(sent.Load()), "sent")
		b.ReportMetric(float64(reachedB.Load()), "reached-b")
		b.ReportMetric(float64(nFailed), "publish-failed")
		b.ReportMetric(float64(sent.Load()-reachedB.Load()-nFailed), "lost")
	}
}

// probeDuringStall pings every 20 ms and opens a connection every 250 ms for
// d, and returns the ping round trips and the connect times (connected
// message and join acknowledgement), in milliseconds.
func probeDuringStall(b *testing.B, url string, d time.Duration) (rtts, connects []float64) {
	pong := make(chan struct{}, 1)
	pinger := dialStall(b, url, func(m realtime.Message) {
		if m.Type == realtime.MessageTypePong {
			pong <- struct{}{}
		}
	})
	end := time.Now().Add(d)
	nextConnect := time.Now()
	for time.Now().Before(end) {
		t0 := time.Now()
		pinger.send(map[string]string{"type": "ping"})
		select {
		case <-pong:
			rtts = append(rtts, ms(time.Since(t0)))
		case <-time.After(d):
			rtts = append(rtts, ms(d))
		}
		if time.Now().After(nextConnect) {
			connects = append(connects, connectTime(b, url))
			nextConnect = time.Now().Add(250 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rtts, connects
}

// connectTime dials, joins a room, and returns how long until the join was
// acknowledged, in milliseconds.
func connectTime(b *testing.B, url string) float64 {
	t0 := time.Now()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(b, err)
	defer ws.Close()
	ws.WriteJSON(map[string]string{"type": "join", "room": "probe"})
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		var m realtime.Message
		require.NoError(b, ws.ReadJSON(&m))
		if m.Type == realtime.MessageTypeJoin {
			return ms(time.Since(t0))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct returns the p-th percentile of xs (p = 100: the maximum).
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}
