package bench

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/broadcast"
	"github.com/realtimehub/realtime/internal/redistest"
)

func redisClient(b *testing.B, addr string, disableAutoPipelining bool) rueidis.Client {
	return redisClientDelay(b, addr, disableAutoPipelining, 0)
}

func redisClientDelay(b *testing.B, addr string, disableAutoPipelining bool, flushDelay time.Duration) rueidis.Client {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:           []string{addr},
		DisableCache:          true,
		DisableAutoPipelining: disableAutoPipelining,
		MaxFlushDelay:         flushDelay,
		Dialer:                net.Dialer{Timeout: time.Second},
	})
	require.NoError(b, err)
	b.Cleanup(c.Close)
	return c
}

// BenchmarkPublish: one pod publishing to many rooms from many goroutines
// (the handler's workers do that), with rueidis auto-pipelining and without
// it, against the same redis-server in the same run. msgs/s is the figure.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	payload := []byte(`pod1` + "\n" + `{"id":"pod1-1","type":"chat","room":"room-17","from":"pod1.42","data":{"text":"hello, everyone in the room"},"timestamp":"2026-11-27T05:00:00Z"}`)
	for _, mode := range []struct {
		name    string
		disable bool
		delay   time.Duration
	}{{"pipelining=auto", false, 0}, {"pipelining=auto-flushdelay-20us", false, 20 * time.Microsecond}, {"pipelining=off", true, 0}} {
		b.Run(mode.name, func(b *testing.B) {
			bus := broadcast.New(redisClientDelay(b, srv.Addr, mode.disable, mode.delay), "pod1", broadcast.Options{}, func(bool, []byte) {})
			rooms := make([]string, 1000)
			for i := range rooms {
				rooms[i] = "room-" + strconv.Itoa(i)
			}
			var n atomic.Int64
			b.SetParallelism(64) // 64 × GOMAXPROCS concurrent publishers
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := n.Add(1)
					if err := bus.Publish(ctx, rooms[i%int64(len(rooms))], payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkCrossPodLatency: pod A publishes 10,000 messages per second for
// two seconds to rooms pod B listens to; B records the time from publish to
// hand-off. Run it with -benchtime 1x.
func BenchmarkCrossPodLatency(b *testing.B) {
	srv := redistest.Start(b)
	const rate, seconds = 10_000, 2
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		var lat []time.Duration
		got := make(chan time.Duration, rate*seconds)
		recv := broadcast.New(redisClientDelay(b, srv.Addr, false, 20*time.Microsecond), "podB", broadcast.Options{}, func(_ bool, p []byte) {
			if sent, err := strconv.ParseInt(string(p[5:]), 10, 64); err == nil {
				got <- time.Duration(time.Now().UnixNano() - sent)
			}
		})
		send := broadcast.New(redisClientDelay(b, srv.Addr, false, 20*time.Microsecond), "podA", broadcast.Options{}, nil)
		rooms := make([]string, 100)
		for i := range rooms {
			rooms[i] = fmt.Sprint("room-", i)
			recv.Watch(rooms[i])
		}
		done := make(chan struct{})
		go func() { recv.Run(ctx); close(done) }()
		require.Eventually(b, func() bool {
			for _, r := range rooms {
				if !recv.Listening(r) {
					return false
				}
			}
			return true
		}, 10*time.Second, 10*time.Millisecond)

		b.ResetTimer()
		start := time.Now()
		var errs atomic.Int64
		for i := range rate * seconds {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
			go func() { // publishers are concurrent, as the handler's workers are
				payload := []byte("podA\n" + strconv.FormatInt(time.Now().UnixNano(), 10))
				if send.Publish(ctx, rooms[i%len(rooms)], payload) != nil {
					errs.Add(1)
				}
			}()
		}
		lat = collectLatencies(got, rate*seconds, 5*time.Second)
		b.StopTimer()
		cancel()
		<-done
		reportLatencies(b, lat, rate*seconds)
		b.ReportMetric(float64(errs.Load()), "publish-errors")
	}
}

// collectLatencies takes up to n latencies from got, waiting at most timeout.
func collectLatencies(got <-chan time.Duration, n int, timeout time.Duration) []time.Duration {
	lat := make([]time.Duration, 0, n)
	deadline := time.After(timeout)
	for len(lat) < n {
		select {
		case d := <-got:
			lat = append(lat, d)
		case <-deadline:
			return lat
		}
	}
	return lat
}

// reportLatencies reports the median, p99 and maximum of lat, and how many
// of want never came.
func reportLatencies(b *testing.B, lat []time.Duration, want int) {
	if len(lat) == 0 {
		b.Fatal("no message arrived")
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
	b.ReportMetric(float64(want-len(lat)), "lost")
}
