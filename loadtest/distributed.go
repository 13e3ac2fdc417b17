package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// fleetResult is what a load-generator process reports at the end.
type fleetResult struct {
	Conns      int      `json:"connections"`
	Deliveries int64    `json:"deliveries"`
	Lost       int64    `json:"lost"`
	Duplicates int64    `json:"duplicates"`
	MaxNs      int64    `json:"max_ns"`
	Latency    []uint64 `json:"latency"`
}

// runFleet is a load-generator process: it opens n connections to url
// (source addresses from index first on), joins room "big", prints
// "ready", then "recv <count>" lines as messages arrive, and on "done" from
// stdin (or stdin closing) prints "result <json>" and exits.
func runFleet(url string, n, first, msgs int) error {
	ctx := context.Background()
	f := fleet{ackMark: []byte(`"type":"join"`)}
	f.conns = make([]*websocket.Conn, n)
	join := []byte(`{"type":"join","room":"big"}`)
	if _, err := f.rampFrom(ctx, url, func(int) []byte { return join }, n, first, 64, func(int) {}); err != nil {
		return err
	}
	defer f.close()
	if !waitUntil(ctx, 120*time.Second, func() bool { return f.acks.Load() >= int64(n) }) {
		return fmt.Errorf("only %d of %d joins acknowledged", f.acks.Load(), n)
	}
	fmt.Println("ready")
	stop := make(chan struct{}) // closed on "done" or when stdin closes
	go func() {
		buf := bufio.NewScanner(os.Stdin)
		for buf.Scan() && buf.Text() != "done" {
		}
		close(stop)
	}()
	for running := true; running; {
		select {
		case <-stop:
			running = false
		case <-time.After(250 * time.Millisecond):
			fmt.Println("recv", f.received.Load())
		}
	}
	r := fleetResult{Conns: n, Deliveries: f.received.Load(), MaxNs: f.maxLat.Load(), Latency: f.hist.merged()}
	for i := range f.perConn {
		switch got := int64(f.perConn[i].Load()); {
		case got < int64(msgs):
			r.Lost += int64(msgs) - got
		case got > int64(msgs):
			r.Duplicates += got - int64(msgs)
		}
	}
	b, _ := json.Marshal(r)
	fmt.Println("result", string(b))
	return nil
}

// startRedis starts a redis-server on a free port for the pods.
func startRedis(outDir string) (addr string, stop func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", nil, fmt.Errorf("redis-server is needed for several pods: apt-get install -y redis-server")
	}
	addr, err = freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", outDir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not start")
}

// runDistributed runs our server as `pods` processes sharing one port behind
// Redis, and `procs` load-generator processes, and reports per pod and in
// total.
func runDistributed(ctx context.Context, pods, procs, n, msgs int, rate float64, settle time.Duration, outDir string) error {
	redisAddr, stopRedis, err := startRedis(outDir)
	if err != nil {
		return err
	}
	defer stopRedis()
	shared, err := freeAddr()
	if err != nil {
		return err
	}
	bin, err := serverBinary("realtime")
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	servers := make([]*serverProc, pods)
	for i := range servers {
		admin, err := freeAddr()
		if err != nil {
			return err
		}
		args := append([]string{"-addr", shared, "-reuseport", "-admin-addr", admin, "-redis", redisAddr}, serverArgs...)
		cmd := exec.Command(bin, args...)
		logf, err := os.Create(filepath.Join(outDir, fmt.Sprintf("pod%d.log", i)))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		servers[i] = &serverProc{impl: "realtime", cmd: cmd, httpURL: "http://" + admin}
		defer servers[i].stop()
	}
	for i, p := range servers {
		if !waitUntil(ctx, 20*time.Second, func() bool { return p.ready() }) {
			return fmt.Errorf("pod %d not ready (log: %s)", i, filepath.Join(outDir, fmt.Sprintf("pod%d.log", i)))
		}
	}
	url := "ws://" + shared + "/ws"
	rss0 := make([]int64, pods)
	for i, p := range servers {
		p.stats(true)
		rss0[i], _ = p.rss()
	}

	// The publisher joins first, then the load-generator processes ramp.
	pub, _, err := dialer(0).DialContext(ctx, url, nil)
	if err != nil {
		return err
	}
	defer pub.Close()
	pub.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"big"}`))
	go func() {
		for {
			if _, _, err := pub.ReadMessage(); err != nil {
				return
			}
		}
	}()
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		lines chan string
	}
	children := make([]*child, procs)
	per := (n + procs - 1) / procs
	start := time.Now()
	for i := range children {
		k := min(per, n-i*per)
		cmd := exec.Command(self, "-fleet", "-url", url, "-conns", strconv.Itoa(k), "-fleet-first", strconv.Itoa(1+i*per), "-msgs", strconv.Itoa(msgs))
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
		children[i] = c
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	}
	recv := make([]int64, procs)
	var mu sync.Mutex
	results := make([]*fleetResult, procs)
	readyCount := 0
	var wg sync.WaitGroup
	readyCh := make(chan int, procs)
	for i, c := range children {
		wg.Go(func() {
			for line := range c.lines {
				switch {
				case line == "ready":
					readyCh <- i
				case strings.HasPrefix(line, "recv "):
					v, _ := strconv.ParseInt(strings.TrimPrefix(line, "recv "), 10, 64)
					mu.Lock()
					recv[i] = v
					mu.Unlock()
				case strings.HasPrefix(line, "result "):
					var r fleetResult
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &r) == nil {
						mu.Lock()
						results[i] = &r
						mu.Unlock()
					}
				}
			}
		})
	}
	for readyCount < procs {
		select {
		case <-readyCh:
			readyCount++
			fmt.Fprintf(os.Stderr, "\r%d/%d load processes ready (%.0fs)", readyCount, procs, time.Since(start).Seconds())
		case <-time.After(180 * time.Second):
			return fmt.Errorf("load processes not ready after 180 s")
		}
	}
	connectRate := float64(n) / time.Since(start).Seconds()
	fmt.Fprintln(os.Stderr)
	time.Sleep(settle)
	type podFig struct {
		Conns       int     `json:"connections"`
		RSSPerConn  float64 `json:"rss_bytes_per_conn"`
		RSSGCPerCon float64 `json:"rss_bytes_per_conn_after_gc"`
		CPUPerDeliv float64 `json:"server_cpu_ns_per_delivery"`
		Goroutines  int     `json:"goroutines"`
	}
	figs := make([]podFig, pods)
	cpu0 := make([]time.Duration, pods)
	for i, p := range servers {
		st, _ := p.stats(false)
		rss, _ := p.rss()
		figs[i].Conns, figs[i].Goroutines = st.Connections, st.Goroutines
		figs[i].RSSPerConn = float64(rss-rss0[i]) / float64(max(st.Connections, 1))
		p.stats(true)
		rssGC, _ := p.rss()
		figs[i].RSSGCPerCon = float64(rssGC-rss0[i]) / float64(max(st.Connections, 1))
		cpu0[i], _ = p.cpu()
	}

	want := int64(msgs) * int64(n)
	t0 := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	total := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		var s int64
		for _, v := range recv {
			s += v
		}
		return s
	}
	for i := range msgs {
		frame := fmt.Sprintf(`{"type":"chat","room":"big","data":{"seq":%d,"t":%d}}`, i, time.Now().UnixNano())
		if err := pub.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(os.Stderr, "\rpublished %d/%d, delivered %d/%d", i+1, msgs, total(), want)
		time.Sleep(time.Until(t0.Add(time.Duration(i+1) * interval)))
	}
	waitUntil(ctx, 60*time.Second, func() bool {
		fmt.Fprintf(os.Stderr, "\rpublished %d/%d, delivered %d/%d", msgs, msgs, total(), want)
		return total() >= want
	})
	elapsed := time.Since(t0)
	fmt.Fprintln(os.Stderr)
	var cpuTotal time.Duration
	for i, p := range servers {
		c1, _ := p.cpu()
		cpuTotal += c1 - cpu0[i]
		figs[i].CPUPerDeliv = float64(c1-cpu0[i]) / float64(max(int64(figs[i].Conns)*int64(msgs), 1))
	}
	for _, c := range children {
		fmt.Fprintln(c.stdin, "done")
		c.stdin.Close()
	}
	wg.Wait()
	agg := fleetResult{Latency: make([]uint64, histBuckets)}
	for i, r := range results {
		if r == nil {
			return fmt.Errorf("load process %d reported no result", i)
		}
		agg.Conns += r.Conns
		agg.Deliveries += r.Deliveries
		agg.Lost += r.Lost
		agg.Duplicates += r.Duplicates
		agg.MaxNs = max(agg.MaxNs, r.MaxNs)
		for b, v := range r.Latency {
			agg.Latency[b] += v
		}
	}
	fmt.Printf("\n%d pods × SO_REUSEPORT behind Redis, %d load processes, %d connections in one room, %d messages at %.0f/s\n\n",
		pods, procs, n, msgs, rate)
	fmt.Println("| pod | connections | RSS B/conn | RSS B/conn after GC | goroutines | server CPU ns/delivery |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	sumConns := 0
	for i, f := range figs {
		sumConns += f.Conns
		fmt.Printf("| pod%d | %d | %.0f | %.0f | %d | %.0f |\n", i, f.Conns, f.RSSPerConn, f.RSSGCPerCon, f.Goroutines, f.CPUPerDeliv)
	}
	fmt.Printf("\ntotal: %d connections on the pods (%d load-test connections + the publisher), connect rate %.0f/s, %d deliveries (%.0f/s), lost %d, duplicated %d, server CPU %.0f ns/delivery, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		sumConns, agg.Conns, connectRate, agg.Deliveries, float64(agg.Deliveries)/elapsed.Seconds(), agg.Lost, agg.Duplicates,
		float64(cpuTotal)/float64(max(agg.Deliveries, 1)), ms(quantile(agg.Latency, 0.5)), ms(quantile(agg.Latency, 0.99)), ms(time.Duration(agg.MaxNs)))
	b, _ := json.MarshalIndent(map[string]any{"pods": figs, "total": agg, "connect_rate_per_s": connectRate,
		"deliveries_per_s": float64(agg.Deliveries) / elapsed.Seconds()}, "", "  ")
	if err := os.WriteFile(filepath.Join(outDir, "distributed.json"), b, 0o644); err != nil {
		return err
	}
	// The same HTML report: one row per pod, and the total with the latency.
	var rows []result
	for i, f := range figs {
		rows = append(rows, result{Target: fmt.Sprintf("pod%d", i), Conns: f.Conns, Runs: 1, RSSPerConn: f.RSSPerConn,
			RSSPerConnGC: f.RSSGCPerCon, GoroutinesAdded: f.Goroutines, CPUPerDelivery: f.CPUPerDeliv, Latency: make([]uint64, histBuckets)})
	}
	rows = append(rows, result{Target: "total", Conns: sumConns, Runs: 1, ConnectRate: connectRate, Deliveries: agg.Deliveries,
		Lost: agg.Lost, Duplicates: agg.Duplicates, DeliveriesPerS: float64(agg.Deliveries) / elapsed.Seconds(),
		CPUPerDelivery: float64(cpuTotal) / float64(max(agg.Deliveries, 1)), Latency: agg.Latency,
		P50ms: ms(quantile(agg.Latency, 0.5)), P99ms: ms(quantile(agg.Latency, 0.99)), MaxMs: ms(time.Duration(agg.MaxNs))})
	return writeHTML(filepath.Join(outDir, "report.html"), rows, strings.Join(os.Args, " "))
}
