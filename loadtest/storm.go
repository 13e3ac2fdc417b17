package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// stormPoint is one sample of a reconnect storm: how many connections had
// rejoined (join acknowledged) ms milliseconds after the drop.
type stormPoint struct {
	Ms     float64 `json:"ms"`
	Joined int64   `json:"joined"`
}

// stormResult is what -storm measures: every connection dropped at once,
// each coming back as realtime.js does.
type stormResult struct {
	BackMs      float64      `json:"all_back_ms"` // until the last join was acknowledged
	ConnectRate float64      `json:"connect_rate_per_s"`
	PeakRSS     *int64       `json:"peak_rss_bytes"`  // null without the server's PID
	Throttled   int64        `json:"turned_away_503"` // upgrades answered 503 (admission control)
	Failed      int64        `json:"failed"`          // connections that never came back
	Ramp        []stormPoint `json:"ramp"`
	// Recovery is what -storm-missed measured (then the fields above are
	// not: the connections come back through recoverStorm).
	Recovery *recoveryResult `json:"recovery,omitempty"`
}

// storm drops every connection at once (the socket closed, no close frame:
// what a network blip or a lost pod does) and brings each back the way
// realtime.js does: a first delay drawn from [0, 500 ms), then exponential
// backoff with full jitter, and Retry-After when the server answers 503. It
// samples the rejoin count and the server's RSS every 100 ms until every
// connection is back (or a minute has passed).
func (t *targetRun) storm(ctx context.Context) *stormResult {
	n := t.cfg.conns
	fmt.Fprintf(os.Stderr, "%s: storm: dropping %d connections at once\n", t.target, n)
	t.f.close()
	t.f.closing.Store(false)
	t.f.acks.Store(0)
	t.f.acked = make([]atomic.Bool, n) // the readers of the dropped connections have ended
	res := &stormResult{}
	if t.cfg.stormMissed > 0 && t.impl == "realtime" {
		res.Recovery = t.recoverStorm(ctx, max(t.cfg.rooms, 1))
		return res
	}
	// Back means the join was acknowledged; a server that does not
	// acknowledge joins (a foreign one without -ack) counts once the hello
	// is written.
	back := &t.f.acks
	if !t.acksJoins() {
		back = new(atomic.Int64)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, throttled, err := reconnect(ctx, i, t.p.wsURL)
			if throttled > 0 {
				atomic.AddInt64(&res.Throttled, int64(throttled))
			}
			if err != nil {
				atomic.AddInt64(&res.Failed, 1)
				return
			}
			if c.WriteText(helloFrame(roomOf(i, t.cfg.rooms))) != nil {
				atomic.AddInt64(&res.Failed, 1)
				return
			}
			t.f.conns[i] = c
			t.f.wg.Add(1)
			go t.f.read(i, c)
			if back != &t.f.acks {
				back.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t.sampleStorm(ctx, res, start, int64(n), back)
	<-done
	fmt.Fprintf(os.Stderr, "%s: storm: all back in %.0f ms (%.0f/s), peak RSS %s, %d turned away with 503, %d failed\n",
		t.target, res.BackMs, res.ConnectRate, mib(res.PeakRSS), res.Throttled, res.Failed)
	return res
}

// sampleStorm records the ramp and the peak RSS until the n connections that
// did not fail had their joins acknowledged (a minute at most).
func (t *targetRun) sampleStorm(ctx context.Context, res *stormResult, start time.Time, n int64, back *atomic.Int64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		joined := back.Load()
		if rss, err := t.p.rss(); err == nil {
			if res.PeakRSS == nil || rss > *res.PeakRSS {
				res.PeakRSS = &rss
			}
		}
		res.Ramp = append(res.Ramp, stormPoint{ms(time.Since(start)), joined})
		if all := joined >= n-atomic.LoadInt64(&res.Failed); all || time.Since(start) > time.Minute || ctx.Err() != nil {
			end := time.Now()
			if all && back == &t.f.acks && joined > 0 { // when the last acknowledgement arrived, not this tick
				end = time.Unix(0, t.f.lastAck.Load())
			}
			res.BackMs = ms(end.Sub(start))
			res.ConnectRate = float64(joined) / end.Sub(start).Seconds()
			return
		}
		<-tick.C
	}
}

// reconnect brings connection i back as realtime.js does, and reports how
// many times the server turned it away with 503.
func reconnect(ctx context.Context, i int, url string) (wsClient, int, error) {
	throttled := 0
	backoff := 500 * time.Millisecond
	delay := time.Duration(rand.Int64N(int64(backoff)))
	for attempt := 0; attempt < 10; attempt++ {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, throttled, ctx.Err()
		}
		c, err := dialWS(ctx, i, url)
		if err == nil {
			return c, throttled, nil
		}
		backoff = min(30*time.Second, 2*backoff)
		delay = time.Duration(rand.Int64N(int64(backoff)))
		if wait, is503 := serviceUnavailable(err); is503 {
			throttled++
			delay = wait + time.Duration(rand.IntN(500))*time.Millisecond
		}
	}
	return nil, throttled, fmt.Errorf("connection %d did not come back", i)
}
