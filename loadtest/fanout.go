package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// roomOf is the room of connection i with nRooms rooms ("big" for one).
func roomOf(i, nRooms int) string {
	if nRooms <= 1 {
		return "big"
	}
	return "room-" + strconv.Itoa(i%nRooms)
}

// joinEveryRoom makes the publisher, connection 0, a member of every room of
// the layout (it joined room 0 while ramping), so that it gets every
// message, as the fan-out plan counts.
func (t *targetRun) joinEveryRoom(ctx context.Context) error {
	nRooms := t.cfg.rooms
	if nRooms <= 1 {
		return nil
	}
	pub := t.f.conns[0]
	acks := t.f.acks.Load()
	for room := 1; room < nRooms; room++ {
		if err := pub.WriteMessage(websocket.TextMessage, helloFrame(roomOf(room, nRooms))); err != nil {
			return fmt.Errorf("publisher join: %w", err)
		}
	}
	waitUntil(ctx, 30*time.Second, func() bool {
		return t.impl != "realtime" || t.f.acks.Load() >= acks+int64(nRooms-1)
	})
	time.Sleep(500 * time.Millisecond)
	return nil
}

// fanoutPlan is what the fan-out should deliver. Conn 0 publishes msgs
// messages, message k to room k%nRooms; every member of that room gets it,
// and conn 0, a member of every room.
type fanoutPlan struct {
	expect     []int64 // messages connection i should get
	cumulative []int64 // deliveries expected once message k is out
	want       int64   // deliveries expected in all
}

// newFanoutPlan counts the deliveries expected of n connections spread over
// nRooms rooms when msgs messages are published.
func newFanoutPlan(n, msgs, nRooms int) fanoutPlan {
	expect := make([]int64, n)
	var want int64
	cumulative := make([]int64, msgs)
	members := make([]int64, max(nRooms, 1))
	for i := range n {
		members[i%max(nRooms, 1)]++
	}
	for k := range msgs {
		room := k % max(nRooms, 1)
		d := members[room]
		if room != 0 {
			d++ // the publisher, a member of every room
		}
		want += d
		cumulative[k] = want
	}
	for i := range n {
		if i == 0 {
			expect[i] = int64(msgs)
			continue
		}
		for k := range msgs {
			if k%max(nRooms, 1) == i%max(nRooms, 1) {
				expect[i]++
			}
		}
	}
	return fanoutPlan{expect: expect, cumulative: cumulative, want: want}
}

// prev returns the deliveries expected before message k.
func prev(cumulative []int64, k int) int64 {
	if k == 0 {
		return 0
	}
	return cumulative[k-1]
}

// publishAll publishes the messages from connection 0, paced by pace, then
// waits up to a minute for every delivery, with a live progress line. It
// returns how long the fan-out took and the server CPU time it used.
func (t *targetRun) publishAll(ctx context.Context, plan fanoutPlan) (elapsed, cpu time.Duration, err error) {
	cfg, f, target := t.cfg, &t.f, t.target
	pub := f.conns[0]
	cpu0, _ := t.p.cpu()
	t0 := time.Now()
	if path := os.Getenv("LOADTEST_PPROF"); path != "" && t.impl == "realtime" {
		go profile(t.p.httpURL, filepath.Join(cfg.outDir, target+"-"+path), time.Duration(float64(cfg.msgs)/cfg.rate*float64(time.Second)))
	}
	for i := range cfg.msgs {
		if ctx.Err() != nil {
			break
		}
		if err := publish(pub, i, roomOf(i, cfg.rooms)); err != nil {
			return 0, 0, fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, i+1, cfg.msgs, f.received.Load(), plan.want)
		t.pace(i, t0, plan.cumulative)
	}
	waitUntil(ctx, 60*time.Second, func() bool {
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, cfg.msgs, cfg.msgs, f.received.Load(), plan.want)
		return f.received.Load() >= plan.want
	})
	fmt.Fprintln(os.Stderr)
	elapsed = time.Since(t0)
	cpu1, _ := t.p.cpu()
	return elapsed, cpu1 - cpu0, nil
}

// pace holds the publisher back after message i (sent from t0 on): until
// message i+1's slot at -rate, or, at rate 0, until 99% of message i's
// deliveries arrived (at most 10 s), so that it goes as fast as deliveries
// keep up.
func (t *targetRun) pace(i int, t0 time.Time, cumulative []int64) {
	if rate := t.cfg.rate; rate > 0 {
		time.Sleep(time.Until(t0.Add(time.Duration(float64(i+1) * float64(time.Second) / rate))))
		return
	}
	target99 := cumulative[i] - (cumulative[i]-prev(cumulative, i))/100
	for end := time.Now().Add(10 * time.Second); t.f.received.Load() < target99 && time.Now().Before(end); {
		time.Sleep(200 * time.Microsecond)
	}
}

// collect compares what each connection got with what it should have (lost
// and duplicated messages), prints it, and fills in the fan-out figures:
// deliveries per second, server CPU per delivery and latency.
func (t *targetRun) collect(expect []int64, elapsed, cpu time.Duration) {
	f, r := &t.f, &t.r
	r.Deliveries = f.received.Load()
	for i := range f.perConn {
		switch got := int64(f.perConn[i].Load()); {
		case got < expect[i]:
			r.Lost += expect[i] - got
		case got > expect[i]:
			r.Duplicates += got - expect[i]
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %d deliveries, %d lost, %d duplicated, %.0f ns server CPU each\n",
		t.target, r.Deliveries, r.Lost, r.Duplicates, float64(cpu)/float64(max(r.Deliveries, 1)))
	if ended := f.ended.Load(); ended > 0 || r.Lost > 0 {
		last, _ := f.lastErr.Load().(string)
		fmt.Fprintf(os.Stderr, "%s: %d connections ended early (last error: %q); server: %s\n", t.target, ended, last, t.p.closeCounters())
	}
	r.DeliveriesPerS = float64(r.Deliveries) / elapsed.Seconds()
	if r.Deliveries > 0 {
		r.CPUPerDelivery = float64(cpu) / float64(r.Deliveries)
	}
	r.Latency = f.hist.merged()
	r.P50ms = ms(quantile(r.Latency, 0.50))
	r.P99ms = ms(quantile(r.Latency, 0.99))
	r.MaxMs = ms(time.Duration(f.maxLat.Load()))
}

// profile saves a CPU profile of the server for d (LOADTEST_PPROF=name).
func profile(base, path string, d time.Duration) {
	resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, max(1, int(d.Seconds()))))
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
