// Command loadtest measures WebSocket servers with real sockets on loopback:
// connections, connect rate, server RSS and heap per idle connection,
// goroutines, fan-out deliveries per second, latency, lost messages and
// server CPU per delivery. It starts each server as a process of its own
// (ours through either door, and the classic gorilla hub as the baseline) so
// that every figure is measured in the same run, side by side.
//
//	go run ./loadtest -conns 10000 -targets realtime-http,realtime-raw,baseline
//
// With -chaos it checks delivery instead: clients spread over rooms across
// pods behind Redis, each checking it gets every offset of its room exactly
// once and in order, while pods are killed, Redis restarted, its pub/sub
// clients killed and client sockets dropped (see chaos.go; it writes
// chaos.json and exits 1 on any loss, duplicate or reordering).
//
//	go run ./loadtest -chaos -chaos-conns 5000 -chaos-duration 60s
//
// Every phase is bounded in time, and the run stops by itself.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	cfg := parseFlags()
	binDir = cfg.binDir
	var err error
	if sourceIPs, err = parseSourceIPs(cfg.sourceIPs); err != nil {
		fail(err)
	}
	if cfg.fleetMode {
		if err := runFleet(cfg.extURL, cfg.conns, cfg.fleetFrom, cfg.msgs); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		return
	}
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	if cfg.chaos.on {
		code := runChaos(ctx, cfg)
		cancel()
		os.Exit(code)
	}
	if cfg.extURL != "" {
		ext = &external{url: cfg.extURL, hello: cfg.hello, publish: cfg.pubTmpl, publishURL: cfg.pubURL, ack: cfg.ackMatch, pid: cfg.extPID}
		cfg.targets = "external"
	}
	if cfg.procs == 0 {
		cfg.procs = (cfg.conns + 19499) / 19500 // one process holds at most ~19,900 sockets here
	}
	if cfg.pods > 1 || cfg.procs > 1 {
		if ext != nil {
			fail(fmt.Errorf("-url drives one load process (at most ~19,500 connections, -procs 1): run one load test per machine for more"))
		}
		if err := runDistributed(ctx, cfg); err != nil {
			fail(err)
		}
		return
	}
	results := runTargets(ctx, cfg)
	printTable(results)
	writeReports(cfg.outDir, results)
}

// fail prints err and exits with status 1.
func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadtest:", err)
	os.Exit(1)
}

// runTargets runs every target cfg.repeat times, interleaved across targets
// so that a slow spell of the machine does not fall on one target alone, and
// returns each target's medians. A failed run ends the load test.
func runTargets(ctx context.Context, cfg *config) []result {
	names := strings.Split(cfg.targets, ",")
	runs := make([][]result, len(names))
	for rep := range max(cfg.repeat, 1) {
		for i, target := range names {
			fmt.Fprintf(os.Stderr, "== run %d/%d: %s\n", rep+1, cfg.repeat, target)
			r, err := runTarget(ctx, cfg, strings.TrimSpace(target))
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
	return results
}

// writeReports writes report.json and report.html into outDir and prints
// their paths.
func writeReports(outDir string, results []result) {
	b, _ := json.MarshalIndent(results, "", "  ")
	path := filepath.Join(outDir, "report.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		fail(err)
	}
	htmlPath := filepath.Join(outDir, "report.html")
	if err := writeHTML(htmlPath, results, strings.Join(os.Args, " ")); err != nil {
		fail(err)
	}
	fmt.Println("report:", path, htmlPath)
}
