package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// targetRun is one run against one target: its server, its connections and
// the figures gathered so far.
type targetRun struct {
	cfg    *config
	target string // as named on the command line, e.g. realtime-http
	impl   string // realtime, baseline or external
	p      *serverProc
	f      fleet
	r      result

	// The server before the ramp, holding one warm connection: what the
	// idle connections are measured against.
	rss0, rss0gc int64
	st0          serverStats
}

// runTarget measures one target: it starts the server (unless external),
// takes the figures of the server before the ramp, ramps the connections,
// measures them idle, then runs the fan-out and collects what arrived.
func runTarget(ctx context.Context, cfg *config, target string) (result, error) {
	impl, door, _ := strings.Cut(target, "-")
	if impl == "baseline" {
		door = "http"
	}
	t := &targetRun{cfg: cfg, target: target, impl: impl,
		r: result{Target: target, Conns: cfg.conns, Messages: cfg.msgs, Rooms: max(cfg.rooms, 1), Client: cfg.client}}
	stop, err := t.startTargetServer(door)
	if err != nil {
		return t.r, err
	}
	defer stop()
	if err := t.warmUp(ctx); err != nil {
		return t.r, err
	}
	err = t.ramp(ctx)
	defer t.f.close()
	if err != nil {
		return t.r, err
	}
	t.waitJoined()
	t.measureIdle()
	if t.cfg.storm {
		t.r.Storm = t.storm(ctx)
		if t.r.Storm.Recovery != nil {
			t.r.na |= figFanout | figCPU | figLatency
			return t.r, nil // the recovering connections were checked and closed: no fan-out follows
		}
	}
	plan := newFanoutPlan(cfg.conns, cfg.msgs, cfg.rooms, ext == nil || ext.publishURL == "", cfg.publisherReceives)
	elapsed, cpu, err := t.publishAll(ctx, plan)
	if err != nil {
		return t.r, err
	}
	t.collect(plan, elapsed, cpu)
	return t.r, nil
}

// startTargetServer starts the target's server process, logging to
// <out>/<target>.log, or, with -url, stands for the external server. The
// function it returns stops what it started.
func (t *targetRun) startTargetServer(door string) (func(), error) {
	if ext != nil {
		t.p = &serverProc{impl: "external", wsURL: ext.url, pid: ext.pid}
		return func() {}, nil
	}
	p, err := startServer(t.impl, door, filepath.Join(t.cfg.outDir, t.target+".log"))
	if err != nil {
		return nil, err
	}
	t.p = p
	return p.stop, nil
}

// warmUp warms the server up (engine, pools) with one connection, then takes
// the baseline: RSS, stats, and RSS after a forced GC.
func (t *targetRun) warmUp(ctx context.Context) error {
	warm, _, err := dialer(0, t.p.wsURL).DialContext(ctx, t.p.wsURL, nil)
	if err != nil {
		return fmt.Errorf("warm-up dial: %w", err)
	}
	warm.WriteMessage(websocket.TextMessage, helloFrame("warm"))
	if t.p.processID() == 0 && t.p.httpURL == "" {
		t.r.na |= figIdle | figCPU | figCPUConnect // nothing to read of a server without PID or /debug/stats
		t.r.Memory = []memPoint{}
		return nil
	}
	time.Sleep(time.Second)
	var errRSS, errStats, errGC, errRSSGC error
	t.rss0, errRSS = t.p.rss()
	t.st0, errStats = t.p.stats(false)
	_, errGC = t.p.stats(true)
	t.rss0gc, errRSSGC = t.p.rss()
	t.r.na |= notMeasured(errRSS, figRSS|figCPU|figCPUConnect) | notMeasured(errStats, figHeap|figGoroutines) |
		notMeasured(errors.Join(errRSS, errGC, errRSSGC), figRSSGC)
	return nil
}

// notMeasured returns f when err is not nil: the figures err kept from being
// measured.
func notMeasured(err error, f figures) figures {
	if err != nil {
		return f
	}
	return 0
}

// ramp opens the connections, each joining its room, with a live progress
// line, and samples the server's RSS about every tenth of the way for the
// memory curve of the report. The fleet is open (to be closed) even when it
// fails.
func (t *targetRun) ramp(ctx context.Context) error {
	n, target, p := t.cfg.conns, t.target, t.p
	t.f.ackMark = []byte(`"type":"join"`)
	if ext != nil && ext.ack != "" {
		t.f.ackMark = []byte(ext.ack)
	} else if ext != nil {
		t.f.ackMark = []byte("\x00never") // no acknowledgement expected
	}
	fmt.Fprintf(os.Stderr, "%s: ramping %d connections (%s client)\n", target, n, t.cfg.client)
	if path := os.Getenv("LOADTEST_PPROF"); path != "" && t.impl == "realtime" {
		go profile(p.httpURL, filepath.Join(t.cfg.outDir, target+"-ramp-"+path), 3*time.Second)
		defer profileSelf(filepath.Join(t.cfg.outDir, target+"-ramp-generator-"+path))()
	}
	cpu0, cpuErr := p.cpu()
	self0 := selfCPU()
	start := time.Now()
	var memMu sync.Mutex
	if t.r.has(figRSS) {
		t.r.Memory = []memPoint{{0, t.rss0}}
	}
	step := max(n/10, 500)
	join := func(i int) []byte { return helloFrame(roomOf(i, t.cfg.rooms)) }
	var err error
	rate, err := t.f.ramp(ctx, p.wsURL, join, n, t.cfg.conc, func(done int) {
		fmt.Fprintf(os.Stderr, "\r%s: %6d/%d connected  %5.0f/s", target, done, n, float64(done)/time.Since(start).Seconds())
		if done%step < 500 || done == n {
			if rss, err := p.rss(); err == nil && t.r.has(figRSS) {
				memMu.Lock()
				t.r.Memory = append(t.r.Memory, memPoint{done, rss})
				memMu.Unlock()
			}
		}
	})
	slices.SortFunc(t.r.Memory, func(a, b memPoint) int { return a.Conns - b.Conns })
	fmt.Fprintln(os.Stderr)
	if err == nil && t.acksJoins() {
		// A connection counts once its join is acknowledged: the rate is
		// over the time until the last acknowledgement, as its reader saw
		// it (not when this poll noticed).
		waitUntil(ctx, 60*time.Second, func() bool { return t.f.acks.Load() >= int64(n) })
		acked := t.f.acks.Load()
		end := time.Now()
		if acked >= int64(n) {
			end = time.Unix(0, t.f.lastAck.Load())
		}
		rate = float64(acked) / end.Sub(start).Seconds()
		if acked < int64(n) {
			fmt.Fprintf(os.Stderr, "%s: only %d of %d joins acknowledged within a minute\n", target, acked, n)
		}
	}
	t.r.ConnectRate = rate
	if cpu1, err1 := p.cpu(); cpuErr == nil && err1 == nil && err == nil {
		t.r.CPUPerConnect = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(n)
		fmt.Fprintf(os.Stderr, "%s: CPU per connect: server %.0f µs, load generator %.0f µs\n", target,
			t.r.CPUPerConnect, float64(selfCPU()-self0)/float64(time.Microsecond)/float64(n))
	} else {
		t.r.na |= figCPUConnect
	}
	return err
}

// acksJoins reports whether the target acknowledges each join (ours and
// the baseline do; a foreign server if -ack says how to recognise it).
func (t *targetRun) acksJoins() bool {
	if ext != nil {
		return ext.ack != ""
	}
	return true
}

// waitJoined gives the joins of a server that does not acknowledge them (a
// foreign one without -ack) a moment; ramp waited for the others' acks.
func (t *targetRun) waitJoined() {
	if !t.acksJoins() {
		time.Sleep(time.Second)
	}
}

// measureIdle lets the server sit idle for -settle, then reads its RSS
// (before and after a forced GC), heap and goroutines, per connection over
// the baseline, and prints them.
func (t *targetRun) measureIdle() {
	n, p, r := t.cfg.conns, t.p, &t.r
	time.Sleep(t.cfg.settle)
	if r.na&figIdle == figIdle {
		fmt.Fprintf(os.Stderr, "%s: idle: not measured (no -server-pid, no /debug/stats)\n", t.target)
		return
	}
	rss1, errRSS := p.rss()
	st1, errStats := p.stats(false)
	_, errGC := p.stats(true)
	rss1gc, errRSSGC := p.rss()
	r.na |= notMeasured(errRSS, figRSS) | notMeasured(errStats, figHeap|figGoroutines) | notMeasured(errors.Join(errRSS, errGC, errRSSGC), figRSSGC)
	r.RSSPerConn = float64(rss1-t.rss0) / float64(n)
	r.RSSPerConnGC = float64(rss1gc-t.rss0gc) / float64(n)
	r.HeapPerConn = float64(int64(st1.HeapInuse)-int64(t.st0.HeapInuse)) / float64(n)
	r.GoroutinesAdded = st1.Goroutines - t.st0.Goroutines
	fmt.Fprintf(os.Stderr, "%s: idle: %s B RSS/conn (%s after GC), %s B heap/conn, %s goroutines added\n",
		t.target, r.num(figRSS, r.RSSPerConn, 0), r.num(figRSSGC, r.RSSPerConnGC, 0), r.num(figHeap, r.HeapPerConn, 0), r.num(figGoroutines, float64(r.GoroutinesAdded), 0))
}

// waitUntil polls cond every 100 ms until it holds, ctx ends, or limit passes.
func waitUntil(ctx context.Context, limit time.Duration, cond func() bool) bool {
	end := time.Now().Add(limit)
	for time.Now().Before(end) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}
