package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"
)

// roomOf is the room of connection i with nRooms rooms ("big" for one).
func roomOf(i, nRooms int) string {
	if nRooms <= 1 {
		return "big"
	}
	return "room-" + strconv.Itoa(i%nRooms)
}

// fanoutPlan is what the fan-out should deliver. Message k goes to room
// k%nRooms; connection i is a member of room i%nRooms and of no other, so
// that the membership is the layout's, whatever the server. Over the
// WebSocket, message k is sent by connection k%nRooms, a member of the room
// it publishes to (one publisher per room: a server may refuse a message
// to a room the sender is not in, or keep one room per connection); with
// -publish-url it is POSTed and no connection sends it.
type fanoutPlan struct {
	expect     []int64 // messages connection i should get
	cumulative []int64 // deliveries expected once message k is out
	want       int64   // deliveries expected in all
	senders    bool    // messages are sent by connections (not POSTed)
	echo       bool    // a sender gets its own messages
}

// sender returns the connection that sends message k.
func sender(k, nRooms int) int { return k % max(nRooms, 1) }

// newFanoutPlan counts the deliveries expected of n connections spread over
// nRooms rooms when msgs messages are published: by their rooms' members
// (senders) or POSTed (!senders). echo says whether a server delivers a
// message to its sender too; a server that does not would otherwise show
// one lost message per message sent.
func newFanoutPlan(n, msgs, nRooms int, senders, echo bool) fanoutPlan {
	nRooms = max(nRooms, 1)
	p := fanoutPlan{expect: make([]int64, n), cumulative: make([]int64, msgs), senders: senders, echo: echo}
	members := make([]int64, nRooms)
	for i := range n {
		members[i%nRooms]++
	}
	for k := range msgs {
		d := members[k%nRooms]
		if senders && !echo {
			d--
		}
		p.want += d
		p.cumulative[k] = p.want
	}
	for i := range n {
		room := i % nRooms
		got := int64(msgs / nRooms) // messages to room: k = room, room+nRooms, …
		if room < msgs%nRooms {
			got++
		}
		if senders && !echo && i < nRooms {
			got = 0 // connection i sends every message of its room
		}
		p.expect[i] = got
	}
	return p
}

// prev returns the deliveries expected before message k.
func prev(cumulative []int64, k int) int64 {
	if k == 0 {
		return 0
	}
	return cumulative[k-1]
}

// publishAll publishes the messages, each from its room's publisher (or
// POSTed), paced by pace, then waits up to -delivery-wait for every
// delivery, with a live progress line. It
// returns how long the fan-out took and the server CPU time it used (-1:
// not measured).
func (t *targetRun) publishAll(ctx context.Context, plan fanoutPlan) (elapsed, cpu time.Duration, err error) {
	cfg, f, target := t.cfg, &t.f, t.target
	if plan.senders {
		for room := range min(cfg.rooms, cfg.conns) {
			if f.conns[room] == nil {
				return 0, 0, fmt.Errorf("connection %d, the publisher of %s, is not connected", room, roomOf(room, cfg.rooms))
			}
		}
	}
	cpu0, errCPU0 := t.p.cpu()
	t0 := time.Now()
	if path := os.Getenv("LOADTEST_PPROF"); path != "" && t.impl == "realtime" {
		go profile(t.p.httpURL, filepath.Join(cfg.outDir, target+"-"+path), time.Duration(float64(cfg.msgs)/cfg.rate*float64(time.Second)))
	}
	for i := range cfg.msgs {
		if ctx.Err() != nil {
			break
		}
		if err := publish(f.conns[sender(i, cfg.rooms)], i, roomOf(i, cfg.rooms)); err != nil {
			return 0, 0, fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, i+1, cfg.msgs, f.received.Load(), plan.want)
		t.pace(i, t0, plan.cumulative)
	}
	waitUntil(ctx, cfg.deliveryWait, func() bool {
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, cfg.msgs, cfg.msgs, f.received.Load(), plan.want)
		return f.received.Load() >= plan.want
	})
	fmt.Fprintln(os.Stderr)
	elapsed = time.Since(t0)
	cpu1, errCPU1 := t.p.cpu()
	if errCPU0 != nil || errCPU1 != nil {
		return elapsed, -1, nil
	}
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

// collect compares what each connection got with what the plan expects (lost
// and duplicated messages), prints it, and fills in the fan-out figures:
// deliveries per second, server CPU per delivery and latency.
func (t *targetRun) collect(plan fanoutPlan, elapsed, cpu time.Duration) {
	f, r, expect := &t.f, &t.r, plan.expect
	r.Deliveries = f.received.Load()
	var pubsLost int64 // what the publishers (connections 0 … rooms-1) lost
	for i := range f.perConn {
		switch got := int64(f.perConn[i].Load()); {
		case got < expect[i]:
			r.Lost += expect[i] - got
			if i < t.cfg.rooms {
				pubsLost += expect[i] - got
			}
		case got > expect[i]:
			r.Duplicates += got - expect[i]
		}
	}
	if cpu < 0 || r.Deliveries == 0 {
		r.na |= figCPU
	}
	if r.Deliveries > 0 {
		r.CPUPerDelivery = float64(cpu) / float64(r.Deliveries)
	}
	r.Latency = f.hist.merged()
	if quantile(r.Latency, 1) == 0 {
		r.na |= figLatency // nothing arrived with a send time
	}
	fmt.Fprintf(os.Stderr, "%s: %d deliveries, %d lost, %d duplicated, %s ns server CPU each\n",
		t.target, r.Deliveries, r.Lost, r.Duplicates, r.num(figCPU, r.CPUPerDelivery, 0))
	if plan.senders && plan.echo && r.Lost > 0 && pubsLost == r.Lost && pubsLost == int64(t.cfg.msgs) {
		fmt.Fprintf(os.Stderr, "%s: every loss is a publisher's own message: a server that does not send a message back to its sender needs -publisher-receives=false\n", t.target)
	}
	if ended := f.ended.Load(); ended > 0 || r.Lost > 0 {
		last, _ := f.lastErr.Load().(string)
		fmt.Fprintf(os.Stderr, "%s: %d connections ended early (last error: %q); server: %s\n", t.target, ended, last, t.p.closeCounters())
	}
	r.DeliveriesPerS = float64(r.Deliveries) / elapsed.Seconds()
	r.P50ms = ms(quantile(r.Latency, 0.50))
	r.P99ms = ms(quantile(r.Latency, 0.99))
	r.MaxMs = ms(time.Duration(f.maxLat.Load()))
}

// profileSelf starts a CPU profile of the load generator itself, saved to
// path by the function it returns (LOADTEST_PPROF=name, during the ramp).
func profileSelf(path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if pprof.StartCPUProfile(f) != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
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
