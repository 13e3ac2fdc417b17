// Command loadtest measures WebSocket servers with real sockets on loopback:
// connections, connect rate, server RSS and heap per idle connection,
// goroutines, fan-out deliveries per second, latency, lost messages and
// server CPU per delivery. It starts each server as a process of its own
// (ours through either door, and the classic gorilla hub as the baseline) so
// that every figure is measured in the same run, side by side.
//
//	go run ./loadtest -conns 10000 -targets realtime-http,realtime-raw,baseline
//
// Every phase is bounded in time, and the run stops by itself.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// result is one target's figures.
type result struct {
	Target          string     `json:"target"`
	Conns           int        `json:"connections"`
	Rooms           int        `json:"rooms"`
	ConnectRate     float64    `json:"connect_rate_per_s"`
	RSSPerConn      float64    `json:"rss_bytes_per_conn"`
	RSSPerConnGC    float64    `json:"rss_bytes_per_conn_after_gc"`
	HeapPerConn     float64    `json:"heap_bytes_per_conn"`
	GoroutinesAdded int        `json:"goroutines_added"`
	Messages        int        `json:"messages"`
	Deliveries      int64      `json:"deliveries"`
	Lost            int64      `json:"lost"`       // messages a connection is missing, summed
	Duplicates      int64      `json:"duplicates"` // messages a connection got more than once
	DeliveriesPerS  float64    `json:"deliveries_per_s"`
	CPUPerDelivery  float64    `json:"server_cpu_ns_per_delivery"`
	P50, P99, Max   float64    `json:"-"`
	P50ms           float64    `json:"latency_p50_ms"`
	P99ms           float64    `json:"latency_p99_ms"`
	MaxMs           float64    `json:"latency_max_ms"`
	Latency         []uint64   `json:"latency_buckets_5pct_from_1us"`
	Runs            int        `json:"runs"`
	Memory          []memPoint `json:"rss_while_ramping"`
}

func main() {
	var (
		fleetMode = flag.Bool("fleet", false, "(internal) run as a load-generator process of a distributed run")
		fleetFrom = flag.Int("fleet-first", 0, "(internal) index of this process's first connection")
		binFlag   = flag.String("bin-dir", "", "where the realtime and baseline server binaries are (default: beside this executable; make loadtest builds them there)")
		pods      = flag.Int("pods", 1, "server processes sharing one port (SO_REUSEPORT) behind a Redis the load test starts; >1 runs our server only")
		procs     = flag.Int("procs", 0, "load-generator processes (default: one per 19,500 connections)")

		conns    = flag.Int("conns", 10000, "connections per target (one process holds at most ~19,900)")
		targets  = flag.String("targets", "realtime-http,realtime-raw,baseline", "comma-separated: realtime-http, realtime-raw, baseline")
		msgs     = flag.Int("msgs", 100, "fan-out messages published to the room")
		rate     = flag.Float64("rate", 10, "fan-out messages per second; 0: as fast as deliveries keep up (each message once 99% of the previous one arrived)")
		roomsN   = flag.Int("rooms", 1, "layout: 1 is one big room; N spreads connections over N rooms and publishes to each in turn")
		settle   = flag.Duration("settle", 3*time.Second, "idle time before memory is read")
		conc     = flag.Int("dial-concurrency", 64, "connections opened at once while ramping")
		outDir   = flag.String("out", "out/loadtest", "directory for the JSON report and server logs")
		deadline = flag.Duration("timeout", 30*time.Minute, "the whole run stops after this")
		repeat   = flag.Int("repeat", 1, "runs per target (interleaved across targets); figures are medians")
		extURL   = flag.String("url", "", "drive this WebSocket server instead of starting ours (e.g. ws://host:port/path)")
		hello    = flag.String("hello", `{"type":"join","room":"{room}"}`, "with -url: the frame each connection sends first; {room} is replaced")
		pubTmpl  = flag.String("publish", `{"type":"chat","room":"{room}","data":{"t":{t}}}`, "with -url: a published message; {room} and {t} (send time, ns) are replaced; receivers find \"t\":<ns> in what they get")
		pubURL   = flag.String("publish-url", "", "with -url: POST published messages here instead of sending them on connection 0")
		ackMatch = flag.String("ack", "", "with -url: a substring of the server's answer to the hello frame; empty: do not wait for one")
		extPID   = flag.Int("server-pid", 0, "with -url: the server's PID on this machine, to read its RSS and CPU")
	)
	flag.Parse()
	binDir = *binFlag
	if *fleetMode {
		if err := runFleet(*extURL, *conns, *fleetFrom, *msgs); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		return
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	if *extURL != "" {
		ext = &external{url: *extURL, hello: *hello, publish: *pubTmpl, publishURL: *pubURL, ack: *ackMatch, pid: *extPID}
		*targets = "external"
	}
	if *procs == 0 {
		*procs = (*conns + 19499) / 19500 // one process holds at most ~19,900 sockets here
	}
	if *pods > 1 || *procs > 1 {
		if err := runDistributed(ctx, *pods, *procs, *conns, *msgs, *rate, *settle, *outDir); err != nil {
			fail(err)
		}
		return
	}
	names := strings.Split(*targets, ",")
	runs := make([][]result, len(names))
	for rep := range max(*repeat, 1) {
		for i, target := range names {
			fmt.Fprintf(os.Stderr, "== run %d/%d: %s\n", rep+1, *repeat, target)
			r, err := runTarget(ctx, strings.TrimSpace(target), *conns, *msgs, *rate, *roomsN, *settle, *conc, *outDir)
			if err != nil {
				fail(fmt.Errorf("%s: %w", target, err))
			}
			runs[i] = append(runs[i], r)
		}
	}
	var results []result
	for _, rs := range runs {
		results = append(results, medianResult(rs))
	}
	printTable(results)
	b, _ := json.MarshalIndent(results, "", "  ")
	path := filepath.Join(*outDir, "report.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fail(err)
	}
	htmlPath := filepath.Join(*outDir, "report.html")
	if err := writeHTML(htmlPath, results, strings.Join(os.Args, " ")); err != nil {
		fail(err)
	}
	fmt.Println("report:", path, htmlPath)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadtest:", err)
	os.Exit(1)
}

// external describes a server the load test drives but did not start.
type external struct {
	url, hello, publish, publishURL, ack string
	pid                                  int
}

var ext *external

// roomOf is the room of connection i with nRooms rooms ("big" for one).
func roomOf(i, nRooms int) string {
	if nRooms <= 1 {
		return "big"
	}
	return "room-" + strconv.Itoa(i%nRooms)
}

func runTarget(ctx context.Context, target string, n, msgs int, rate float64, nRooms int, settle time.Duration, conc int, outDir string) (result, error) {
	impl, door, _ := strings.Cut(target, "-")
	if impl == "baseline" {
		door = "http"
	}
	r := result{Target: target, Conns: n, Messages: msgs, Rooms: max(nRooms, 1)}
	var p *serverProc
	if ext != nil {
		p = &serverProc{impl: "external", wsURL: ext.url, pid: ext.pid}
	} else {
		var err error
		p, err = startServer(impl, door, filepath.Join(outDir, target+".log"))
		if err != nil {
			return r, err
		}
		defer p.stop()
	}
	var err error

	// Warm up (engine, pools) with one connection, then take the baseline.
	warm, _, err := dialer(0).DialContext(ctx, p.wsURL, nil)
	if err != nil {
		return r, fmt.Errorf("warm-up dial: %w", err)
	}
	warm.WriteMessage(websocket.TextMessage, helloFrame("warm"))
	time.Sleep(time.Second)
	rss0, _ := p.rss()
	st0, _ := p.stats(false)
	p.stats(true)
	rss0gc, _ := p.rss()

	f := fleet{ackMark: []byte(`"type":"join"`)}
	if ext != nil && ext.ack != "" {
		f.ackMark = []byte(ext.ack)
	} else if ext != nil {
		f.ackMark = []byte("\x00never") // no acknowledgement expected
	}
	fmt.Fprintf(os.Stderr, "%s: ramping %d connections\n", target, n)
	start := time.Now()
	var memMu sync.Mutex
	r.Memory = []memPoint{{0, rss0}}
	step := max(n/10, 500)
	r.ConnectRate, err = f.ramp(ctx, p.wsURL, func(i int) []byte { return helloFrame(roomOf(i, nRooms)) }, n, conc, func(done int) {
		fmt.Fprintf(os.Stderr, "\r%s: %6d/%d connected  %5.0f/s", target, done, n, float64(done)/time.Since(start).Seconds())
		if done%step < 500 || done == n {
			if rss, err := p.rss(); err == nil {
				memMu.Lock()
				r.Memory = append(r.Memory, memPoint{done, rss})
				memMu.Unlock()
			}
		}
	})
	slices.SortFunc(r.Memory, func(a, b memPoint) int { return a.Conns - b.Conns })
	fmt.Fprintln(os.Stderr)
	defer f.close()
	if err != nil {
		return r, err
	}
	// Joined: ours acknowledges each join; the baseline does not, so wait
	// for its connection count and give the joins a moment.
	waitUntil(ctx, 60*time.Second, func() bool {
		switch {
		case impl == "realtime" || (ext != nil && ext.ack != ""):
			return f.acks.Load() >= int64(n)
		case ext != nil:
			return true
		}
		s, err := p.stats(false)
		return err == nil && s.Connections >= n
	})
	if ext != nil && ext.ack == "" {
		time.Sleep(time.Second) // no acknowledgement to wait for: give the hellos a moment
	}
	time.Sleep(settle)
	rss1, _ := p.rss()
	st1, _ := p.stats(false)
	p.stats(true)
	rss1gc, _ := p.rss()
	r.RSSPerConn = float64(rss1-rss0) / float64(n)
	r.RSSPerConnGC = float64(rss1gc-rss0gc) / float64(n)
	r.HeapPerConn = float64(int64(st1.HeapInuse)-int64(st0.HeapInuse)) / float64(n)
	r.GoroutinesAdded = st1.Goroutines - st0.Goroutines
	fmt.Fprintf(os.Stderr, "%s: idle: %.0f B RSS/conn (%.0f after GC), %.0f B heap/conn, %d goroutines added\n",
		target, r.RSSPerConn, r.RSSPerConnGC, r.HeapPerConn, r.GoroutinesAdded)

	// Fan-out: conn 0 publishes msgs messages, message k to room k%nRooms;
	// every member of that room gets it, and conn 0, a member of every room.
	pub := f.conns[0]
	if nRooms > 1 {
		acks := f.acks.Load()
		for room := 1; room < nRooms; room++ {
			if err := pub.WriteMessage(websocket.TextMessage, helloFrame(roomOf(room, nRooms))); err != nil {
				return r, fmt.Errorf("publisher join: %w", err)
			}
		}
		waitUntil(ctx, 30*time.Second, func() bool {
			return impl != "realtime" || f.acks.Load() >= acks+int64(nRooms-1)
		})
		time.Sleep(500 * time.Millisecond)
	}
	expect := make([]int64, n) // messages connection i should get
	var want int64
	cumulative := make([]int64, msgs) // deliveries expected once message k is out
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
	cpu0, _ := p.cpu()
	t0 := time.Now()
	if path := os.Getenv("LOADTEST_PPROF"); path != "" && impl == "realtime" {
		go profile(p.httpURL, filepath.Join(outDir, target+"-"+path), time.Duration(float64(msgs)/rate*float64(time.Second)))
	}
	for i := range msgs {
		if ctx.Err() != nil {
			break
		}
		if err := publish(pub, i, roomOf(i, nRooms)); err != nil {
			return r, fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, i+1, msgs, f.received.Load(), want)
		if rate > 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(float64(i+1) * float64(time.Second) / rate))))
			continue
		}
		target99 := cumulative[i] - (cumulative[i]-prev(cumulative, i))/100
		for end := time.Now().Add(10 * time.Second); f.received.Load() < target99 && time.Now().Before(end); {
			time.Sleep(200 * time.Microsecond)
		}
	}
	waitUntil(ctx, 60*time.Second, func() bool {
		fmt.Fprintf(os.Stderr, "\r%s: published %d/%d, delivered %d/%d", target, msgs, msgs, f.received.Load(), want)
		return f.received.Load() >= want
	})
	fmt.Fprintln(os.Stderr)
	elapsed := time.Since(t0)
	cpu1, _ := p.cpu()
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
		target, r.Deliveries, r.Lost, r.Duplicates, float64(cpu1-cpu0)/float64(max(r.Deliveries, 1)))
	if ended := f.ended.Load(); ended > 0 || r.Lost > 0 {
		last, _ := f.lastErr.Load().(string)
		fmt.Fprintf(os.Stderr, "%s: %d connections ended early (last error: %q); server: %s\n", target, ended, last, p.closeCounters())
	}
	r.DeliveriesPerS = float64(r.Deliveries) / elapsed.Seconds()
	if r.Deliveries > 0 {
		r.CPUPerDelivery = float64(cpu1-cpu0) / float64(r.Deliveries)
	}
	r.Latency = f.hist.merged()
	r.P50ms = ms(quantile(r.Latency, 0.50))
	r.P99ms = ms(quantile(r.Latency, 0.99))
	r.MaxMs = ms(time.Duration(f.maxLat.Load()))
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

func printTable(rs []result) {
	fmt.Println()
	fmt.Println("| target | conns | runs | connect/s | RSS B/conn | RSS B/conn after GC | heap B/conn | goroutines added | deliveries/s | lost (all runs) | dup | server CPU ns/delivery | p50 ms | p99 ms | max ms |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		fmt.Printf("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %d | %.0f | %d | %d | %.0f | %.1f | %.1f | %.1f |\n",
			r.Target, r.Conns, r.Runs, r.ConnectRate, r.RSSPerConn, r.RSSPerConnGC, r.HeapPerConn, r.GoroutinesAdded,
			r.DeliveriesPerS, r.Lost, r.Duplicates, r.CPUPerDelivery, r.P50ms, r.P99ms, r.MaxMs)
	}
	if len(rs) > 1 {
		base := rs[len(rs)-1]
		fmt.Printf("\nratios to %s (same run): ", base.Target)
		for _, r := range rs[:len(rs)-1] {
			fmt.Printf("%s: RSS/conn %.3f×, CPU/delivery %.2f×, deliveries/s %.2f×;  ", r.Target,
				r.RSSPerConnGC/base.RSSPerConnGC, r.CPUPerDelivery/base.CPUPerDelivery, r.DeliveriesPerS/base.DeliveriesPerS)
		}
		fmt.Println()
	}
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

// medianResult returns the median of each figure over runs of one target
// (the latency histogram is the merged one).
func medianResult(rs []result) result {
	m := rs[0]
	med := func(get func(r result) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = get(r)
		}
		sort.Float64s(xs)
		if n := len(xs); n%2 == 1 {
			return xs[n/2]
		} else {
			return (xs[n/2-1] + xs[n/2]) / 2
		}
	}
	m.Runs = len(rs)
	m.ConnectRate = med(func(r result) float64 { return r.ConnectRate })
	m.RSSPerConn = med(func(r result) float64 { return r.RSSPerConn })
	m.RSSPerConnGC = med(func(r result) float64 { return r.RSSPerConnGC })
	m.HeapPerConn = med(func(r result) float64 { return r.HeapPerConn })
	m.GoroutinesAdded = int(med(func(r result) float64 { return float64(r.GoroutinesAdded) }))
	m.Deliveries = int64(med(func(r result) float64 { return float64(r.Deliveries) }))
	m.Lost, m.Duplicates = 0, 0
	for _, r := range rs {
		m.Lost += r.Lost // losses are summed over runs, never hidden by a median
		m.Duplicates += r.Duplicates
	}
	m.DeliveriesPerS = med(func(r result) float64 { return r.DeliveriesPerS })
	m.CPUPerDelivery = med(func(r result) float64 { return r.CPUPerDelivery })
	m.P50ms = med(func(r result) float64 { return r.P50ms })
	m.P99ms = med(func(r result) float64 { return r.P99ms })
	m.MaxMs = med(func(r result) float64 { return r.MaxMs })
	m.Latency = make([]uint64, histBuckets)
	for _, r := range rs {
		for i, n := range r.Latency {
			m.Latency[i] += n
		}
	}
	return m
}

// helloFrame is what a connection sends first: a join to room.
func helloFrame(room string) []byte {
	if ext != nil {
		return []byte(strings.ReplaceAll(ext.hello, "{room}", room))
	}
	return fmt.Appendf(nil, `{"type":"join","room":%q}`, room)
}

// prev returns the deliveries expected before message k.
func prev(cumulative []int64, k int) int64 {
	if k == 0 {
		return 0
	}
	return cumulative[k-1]
}

// publish sends message i to room, carrying its send time.
func publish(pub *websocket.Conn, i int, room string) error {
	now := time.Now().UnixNano()
	if ext == nil {
		return pub.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"chat","room":%q,"data":{"seq":%d,"t":%d}}`, room, i, now))
	}
	body := strings.NewReplacer("{room}", room, "{t}", fmt.Sprint(now)).Replace(ext.publish)
	if ext.publishURL == "" {
		return pub.WriteMessage(websocket.TextMessage, []byte(body))
	}
	resp, err := http.Post(ext.publishURL, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("publish endpoint: %s", resp.Status)
	}
	return nil
}
