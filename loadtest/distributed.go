package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// runDistributed runs our server as `pods` processes sharing one port behind
// Redis, and `procs` load-generator processes, and reports per pod and in
// total.
func runDistributed(ctx context.Context, cfg *config) error {
	redisAddr, stopRedis, err := startRedis(cfg.outDir)
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
	servers, stopPods, err := startPods(bin, shared, redisAddr, cfg.pods, cfg.outDir)
	if err != nil {
		return err
	}
	defer stopPods()
	if err := waitPodsReady(ctx, servers, cfg.outDir); err != nil {
		return err
	}
	url := "ws://" + shared + "/ws"
	rss0 := podsRSSAfterGC(servers)

	// The publisher joins first, then the load-generator processes ramp.
	pub, err := joinPublisher(ctx, url)
	if err != nil {
		return err
	}
	defer pub.Close()
	lp := &loadProcs{}
	defer lp.stop()
	fmt.Fprintf(os.Stderr, "%d load processes ramping %d connections (%s client)\n", cfg.procs, cfg.conns, cfg.client)
	if err := lp.start(self, url, cfg.sourceIPs, cfg.client, cfg.procs, cfg.conns, cfg.msgs); err != nil {
		return err
	}
	lp.follow()
	if err := lp.waitReady(); err != nil {
		return err
	}
	s := distSummary{cfg: cfg, connectRate: float64(cfg.conns) / time.Since(lp.started).Seconds()}
	fmt.Fprintln(os.Stderr)
	time.Sleep(cfg.settle)
	var cpu0 []time.Duration
	s.figs, cpu0 = measurePods(servers, rss0)

	s.elapsed, err = publishBig(ctx, pub, cfg.msgs, cfg.rate, int64(cfg.msgs)*int64(cfg.conns), lp.total)
	if err != nil {
		return err
	}
	s.cpuTotal = podsCPU(servers, cpu0, s.figs, cfg.msgs)
	lp.finish()
	if s.agg, err = lp.aggregate(); err != nil {
		return err
	}
	s.print()
	if err := s.write(); err != nil {
		return err
	}
	if !s.passed {
		return errThresholds
	}
	return nil
}

// joinPublisher opens the publisher's connection and joins room "big". It is
// a member of the room too, so a reader drains (and discards) what it gets.
func joinPublisher(ctx context.Context, url string) (wsClient, error) {
	pub, err := dialWS(ctx, 0, url)
	if err != nil {
		return nil, err
	}
	pub.WriteText([]byte(`{"type":"join","room":"big"}`))
	go func() {
		for {
			if _, err := pub.ReadMessage(); err != nil {
				return
			}
		}
	}()
	return pub, nil
}

// publishBig publishes msgs messages to room "big" at rate per second, then
// waits up to a minute until total() reaches want, with a live progress
// line. It returns how long that took.
func publishBig(ctx context.Context, pub wsClient, msgs int, rate float64, want int64, total func() int64) (time.Duration, error) {
	t0 := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := range msgs {
		frame := fmt.Sprintf(`{"type":"chat","room":"big","data":{"seq":%d,"t":%d}}`, i, time.Now().UnixNano())
		if err := pub.WriteText([]byte(frame)); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
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
	return elapsed, nil
}

// distSummary is a distributed run's figures, for its reports.
type distSummary struct {
	cfg         *config
	figs        []podFig
	agg         fleetResult // the load processes' results, summed
	connectRate float64
	elapsed     time.Duration // the fan-out's
	cpuTotal    time.Duration // the pods' CPU time during the fan-out
	passed      bool          // no threshold broken (set by write)
}

// sumConns is the connections on the pods: the load processes' and the
// publisher.
func (s *distSummary) sumConns() int {
	n := 0
	for _, f := range s.figs {
		n += f.Conns
	}
	return n
}

// deliveriesPerS is the fan-out's deliveries per second, over all pods.
func (s *distSummary) deliveriesPerS() float64 {
	return float64(s.agg.Deliveries) / s.elapsed.Seconds()
}

// cpuPerDelivery is the pods' CPU time per delivery, in ns.
func (s *distSummary) cpuPerDelivery() float64 {
	return float64(s.cpuTotal) / float64(max(s.agg.Deliveries, 1))
}

// print prints the per-pod table and the total line on stdout.
func (s *distSummary) print() {
	cfg, agg := s.cfg, s.agg
	fmt.Printf("\n%d pods × SO_REUSEPORT behind Redis, %d load processes, %d connections in one room, %d messages at %.0f/s\n\n",
		cfg.pods, cfg.procs, cfg.conns, cfg.msgs, cfg.rate)
	fmt.Println("| pod | connections | RSS B/conn | RSS B/conn after GC | goroutines | server CPU ns/delivery |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	for i, f := range s.figs {
		fmt.Printf("| pod%d | %d | %.0f | %.0f | %d | %.0f |\n", i, f.Conns, f.RSSPerConn, f.RSSGCPerCon, f.Goroutines, f.CPUPerDeliv)
	}
	fmt.Printf("\ntotal: %d connections on the pods (%d load-test connections + the publisher), connect rate %.0f/s, %d deliveries (%.0f/s), lost %d, duplicated %d, server CPU %.0f ns/delivery, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		s.sumConns(), agg.Conns, s.connectRate, agg.Deliveries, s.deliveriesPerS(), agg.Lost, agg.Duplicates,
		s.cpuPerDelivery(), ms(quantile(agg.Latency, 0.5)), ms(quantile(agg.Latency, 0.99)), ms(time.Duration(agg.MaxNs)))
}

// write judges the thresholds on the total and writes distributed.json and
// report.html into the output directory.
func (s *distSummary) write() error {
	agg := s.agg
	// The same HTML report: one row per pod, and the total with the latency.
	var rows []result
	for i, f := range s.figs {
		// A pod's goroutines are all it has, not those added: not the
		// column's figure. Its fan-out figures are the total's.
		rows = append(rows, result{Target: fmt.Sprintf("pod%d", i), Conns: f.Conns, Runs: 1, RSSPerConn: f.RSSPerConn,
			RSSPerConnGC: f.RSSGCPerCon, CPUPerDelivery: f.CPUPerDeliv, Latency: make([]uint64, histBuckets),
			na: figConnectRate | figHeap | figGoroutines | figFanout | figLatency})
	}
	total := result{Target: "total", Conns: s.sumConns(), Messages: s.cfg.msgs, Rooms: 1, Runs: 1, ConnectRate: s.connectRate, Deliveries: agg.Deliveries,
		Lost: agg.Lost, Duplicates: agg.Duplicates, DeliveriesPerS: s.deliveriesPerS(),
		CPUPerDelivery: s.cpuPerDelivery(), Latency: agg.Latency,
		P50ms: ms(quantile(agg.Latency, 0.5)), P99ms: ms(quantile(agg.Latency, 0.99)), MaxMs: ms(time.Duration(agg.MaxNs)),
		na: figIdle}
	if quantile(agg.Latency, 1) == 0 {
		total.na |= figLatency
	}
	rows = append(rows, total)
	s.passed = s.cfg.thresholds.judgeAll(rows[len(rows)-1:])
	total = rows[len(rows)-1]
	b, _ := json.MarshalIndent(map[string]any{"pods": s.figs, "total": agg, "connect_rate_per_s": s.connectRate,
		"deliveries_per_s": s.deliveriesPerS(), "command": s.cfg.command, "client": s.cfg.client, "thresholds": total.wire("").Thresholds, "passed": s.passed}, "", "  ")
	if err := os.WriteFile(filepath.Join(s.cfg.outDir, "distributed.json"), b, 0o644); err != nil {
		return err
	}
	return writeHTML(filepath.Join(s.cfg.outDir, "report.html"), rows, s.cfg.command)
}
