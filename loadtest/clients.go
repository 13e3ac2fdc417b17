package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// histogram counts latencies in buckets 5% wide, from 1 µs to about 20 min,
// sharded so that thousands of reader goroutines do not contend on one line.
type histogram struct {
	shards [64]struct {
		b [histBuckets]atomic.Uint64
		_ [64]byte
	}
}

const histBuckets = 430

var logBase = math.Log(1.05)

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us < 1 {
		return 0
	}
	return min(int(math.Log(us)/logBase)+1, histBuckets-1)
}

func bucketUpper(i int) time.Duration {
	return time.Duration(math.Pow(1.05, float64(i)) * float64(time.Microsecond))
}

func (h *histogram) add(shard int, d time.Duration) { h.shards[shard%64].b[bucketOf(d)].Add(1) }

// merged returns the total count per bucket.
func (h *histogram) merged() []uint64 {
	out := make([]uint64, histBuckets)
	for s := range h.shards {
		for i := range out {
			out[i] += h.shards[s].b[i].Load()
		}
	}
	return out
}

// quantile returns the upper bound of the bucket holding quantile q.
func quantile(buckets []uint64, q float64) time.Duration {
	var total uint64
	for _, n := range buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	target := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range buckets {
		seen += n
		if seen >= target {
			return bucketUpper(i)
		}
	}
	return bucketUpper(len(buckets) - 1)
}

// fleet is the load generator's connections.
type fleet struct {
	conns    []wsClient
	ackMark  []byte        // what a join acknowledgement contains
	acks     atomic.Int64  // connections whose join was acknowledged
	acked    []atomic.Bool // per connection: its first join message (its own acknowledgement) arrived
	lastAck  atomic.Int64  // when the latest acknowledgement arrived (Unix ns)
	ended    atomic.Int64  // connections whose reader stopped before close()
	closing  atomic.Bool
	lastErr  atomic.Value // the last reader error, for the report
	received atomic.Int64 // chat messages seen
	perConn  []atomic.Int32
	hist     histogram
	maxLat   atomic.Int64
	wg       sync.WaitGroup
}

var tKey = []byte(`"t":`)

// read counts what arrives on conn i: join acks and chat messages, whose
// latency is now minus the send time they carry.
func (f *fleet) read(i int, c wsClient) {
	defer f.wg.Done()
	for {
		b, err := c.ReadMessage()
		if err != nil {
			if !f.closing.Load() {
				f.ended.Add(1)
				f.lastErr.Store(err.Error())
			}
			return
		}
		switch {
		case bytes.Contains(b, f.ackMark):
			// A connection's first join message is its acknowledgement;
			// later ones are other members' join events.
			if f.acked[i].CompareAndSwap(false, true) {
				f.noteAck(time.Now().UnixNano())
				f.acks.Add(1) // after lastAck: who sees every ack sees the last one's time
			}
		case bytes.Contains(b, tKey):
			now := time.Now().UnixNano()
			f.received.Add(1)
			f.perConn[i].Add(1)
			if j := bytes.Index(b, tKey); j >= 0 {
				rest := b[j+len(tKey):]
				k := 0
				for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
					k++
				}
				if sent, err := strconv.ParseInt(string(rest[:k]), 10, 64); err == nil {
					d := time.Duration(now - sent)
					f.hist.add(i, d)
					for {
						m := f.maxLat.Load()
						if int64(d) <= m || f.maxLat.CompareAndSwap(m, int64(d)) {
							break
						}
					}
				}
			}
		}
	}
}

// noteAck records an acknowledgement that arrived at now (Unix ns).
func (f *fleet) noteAck(now int64) {
	for {
		last := f.lastAck.Load()
		if now <= last || f.lastAck.CompareAndSwap(last, now) {
			return
		}
	}
}

// ramp opens n connections to url, each joining room, with a live progress
// line. It returns the connect rate.
func (f *fleet) ramp(ctx context.Context, url string, join func(i int) []byte, n, concurrency int, progress func(done int)) (float64, error) {
	return f.rampFrom(ctx, url, join, n, 0, concurrency, progress)
}

// rampFrom is ramp with source addresses picked from index first on, so that
// several load processes spread over different addresses.
func (f *fleet) rampFrom(ctx context.Context, url string, join func(i int) []byte, n, first, concurrency int, progress func(done int)) (float64, error) {
	f.conns = make([]wsClient, n)
	f.perConn = make([]atomic.Int32, n)
	f.acked = make([]atomic.Bool, n)
	start := time.Now()
	var next atomic.Int64
	var done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dialRetry(ctx, first+i, url)
				if err == nil {
					err = c.WriteText(join(i))
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					return
				}
				f.conns[i] = c
				f.wg.Add(1)
				go f.read(i, c)
				if d := int(done.Add(1)); d%500 == 0 || d == n {
					progress(d)
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// close closes every connection and waits for the readers.
func (f *fleet) close() {
	f.closing.Store(true)
	for _, c := range f.conns {
		if c != nil {
			c.Close()
		}
	}
	f.wg.Wait()
}

// dialRetry dials as a well-behaved client does: a server that turns it
// away with 503 (admission control) is tried again after its Retry-After,
// plus jitter, up to ten times.
func dialRetry(ctx context.Context, i int, url string) (wsClient, error) {
	for attempt := 0; ; attempt++ {
		c, err := dialWS(ctx, i, url)
		wait, is503 := serviceUnavailable(err)
		if err == nil || !is503 || attempt == 9 {
			return c, err
		}
		select {
		case <-time.After(wait + time.Duration(rand.IntN(500))*time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
