package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// apiConcurrency is how many requests are in flight at once, as the issue
// asks: 64 concurrent clients with keep-alive.
const apiConcurrency = 64

// BenchmarkAPIPublish: messages per second a backend publishes to a room
// (one member on the pod), through the server API (POST /api/publish over
// HTTP/1.1 with keep-alive, 64 requests in flight) beside the in-process
// Handler.Publish from 64 goroutines, with the defaults: one pod (history in
// memory) and two pods linked by Redis (history in Redis streams). msgs/s
// is the figure; the http/in-process ratio is the API's cost.
func BenchmarkAPIPublish(b *testing.B) {
	b.Run("pod=single", func(b *testing.B) { benchAPIPublish(b, nil) })
	b.Run("pod=redis", func(b *testing.B) {
		addr := redistest.Start(b).Addr
		benchAPIPublish(b, func(hub realtime.Hub) realtime.Broadcaster {
			rb := realtime.NewRedisBroadcaster(redisClientDelay(b, addr, false, 20*time.Microsecond), hub, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { rb.Run(ctx); close(done) }()
			b.Cleanup(func() { cancel(); <-done })
			for rb.Ready() != nil {
				time.Sleep(10 * time.Millisecond)
			}
			return rb
		})
	})
}

func benchAPIPublish(b *testing.B, broadcaster func(realtime.Hub) realtime.Broadcaster) {
	logger := slog.New(slog.DiscardHandler)
	hub := realtime.NewHub(logger)
	cfg := realtime.HandlerConfig{}
	if broadcaster != nil {
		cfg.Broadcaster = broadcaster(hub)
	}
	h := realtime.NewHandler(hub, logger, cfg)
	member := newFrameConn("m.1")
	hub.Register(member)
	hub.JoinRoom(member, "room")
	b.Run("via=in-process", func(b *testing.B) {
		run64(b, func() error {
			return h.Publish(context.Background(), &realtime.Message{Type: "news", Room: "room", Data: []byte(`{"n":1}`)})
		})
	})
	b.Run("via=http", func(b *testing.B) {
		srv := httptest.NewServer(realtime.NewAPI(h, realtime.APIConfig{}))
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: apiConcurrency, MaxConnsPerHost: apiConcurrency}}
		body := []byte(`{"room":"room","type":"news","data":{"n":1}}`)
		run64(b, func() error {
			resp, err := client.Post(srv.URL+"/api/publish", "application/json", bytes.NewReader(body))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return http.ErrNotSupported
			}
			return nil
		})
	})
	if got := delivered(member); got == 0 {
		b.Fatal("the member got nothing")
	}
}

// run64 runs b.N calls of fn from apiConcurrency goroutines and reports
// msgs/s; it fails on any error.
func run64(b *testing.B, fn func() error) {
	var wg sync.WaitGroup
	next := make(chan struct{}, apiConcurrency)
	errs := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	for range apiConcurrency {
		wg.Go(func() {
			for range next {
				if err := fn(); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}
