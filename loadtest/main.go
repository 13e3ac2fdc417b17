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
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	os.Exit(run(os.Args[0], os.Args[1:]))
}

// run runs the load test that args (the command line without the program's
// name) ask for, and returns the exit status: 0; 1 when the run failed,
// broke a threshold, or -chaos found a fault; 2 on a bad command line.
func run(prog string, args []string) int {
	cfg, err := parseFlags(prog, args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // parseFlags printed why
	}
	binDir = cfg.binDir
	if serverEnv = inheritedServerEnv(os.Environ()); len(serverEnv) > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: the servers inherit %v: not their defaults\n", serverEnv)
	}
	if serverArgs = harnessArgs(cfg); len(serverArgs) > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: our servers run with %v: one publisher sends past the default 50 messages a second\n", serverArgs)
	}
	wsClientKind = cfg.client
	if sourceIPs, err = parseSourceIPs(cfg.sourceIPs); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}
	if cfg.fleetMode {
		if err := runFleet(cfg.extURL, cfg.conns, cfg.fleetFrom, cfg.msgs); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			return 1
		}
		return 0
	}
	if err := os.MkdirAll(cfg.outDir, 0o755); err != nil {
		return failed(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	if cfg.chaos.on {
		return runChaos(ctx, cfg)
	}
	ext = nil
	if cfg.extURL != "" {
		ext = &external{url: cfg.extURL, hello: cfg.hello, publish: cfg.pubTmpl, publishURL: cfg.pubURL, ack: cfg.ackMatch, pid: cfg.extPID, headers: http.Header{}}
		for _, h := range cfg.pubHdr {
			name, value, _ := strings.Cut(h, ":")
			ext.headers.Add(strings.TrimSpace(name), strings.TrimSpace(value))
		}
		cfg.targets = "external"
	}
	if cfg.procs == 0 {
		cfg.procs = (cfg.conns + 19499) / 19500 // one process holds at most ~19,900 sockets here
	}
	if cfg.pods > 1 || cfg.procs > 1 {
		if ext != nil {
			fmt.Fprintln(os.Stderr, "loadtest: -url drives one load process (at most ~19,500 connections, -procs 1): run one load test per machine for more")
			return 2
		}
		if err := runDistributed(ctx, cfg); errors.Is(err, errThresholds) {
			return 1 // each broken threshold was printed
		} else if err != nil {
			return failed(err)
		}
		return 0
	}
	results, err := runTargets(ctx, cfg)
	if err != nil {
		return failed(err)
	}
	printTable(results)
	ok := cfg.thresholds.judgeAll(results)
	if err := writeReports(cfg, results); err != nil {
		return failed(err)
	}
	if !ok {
		return 1
	}
	return 0
}

// errThresholds is a run that went through but broke a threshold.
var errThresholds = errors.New("threshold broken")

// failed prints err and returns exit status 1.
func failed(err error) int {
	fmt.Fprintln(os.Stderr, "loadtest:", err)
	return 1
}

// runTargets runs every target cfg.repeat times, interleaved across targets
// so that a slow spell of the machine does not fall on one target alone, and
// returns each target's medians. A failed run ends the load test.
func runTargets(ctx context.Context, cfg *config) ([]result, error) {
	names := strings.Split(cfg.targets, ",")
	runs := make([][]result, len(names))
	for rep := range max(cfg.repeat, 1) {
		for i, target := range names {
			fmt.Fprintf(os.Stderr, "== run %d/%d: %s\n", rep+1, cfg.repeat, target)
			r, err := runTarget(ctx, cfg, strings.TrimSpace(target))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", target, err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	var results []result
	for _, rs := range runs {
		results = append(results, medianResult(rs))
	}
	return results, nil
}

// writeReports writes report.json and report.html into the output directory
// and prints their paths.
func writeReports(cfg *config, results []result) error {
	wire := make([]resultJSON, len(results))
	for i := range results {
		wire[i] = results[i].wire(cfg.command)
	}
	b, _ := json.MarshalIndent(wire, "", "  ")
	path := filepath.Join(cfg.outDir, "report.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	htmlPath := filepath.Join(cfg.outDir, "report.html")
	if err := writeHTML(htmlPath, results, cfg.command); err != nil {
		return err
	}
	fmt.Println("report:", path, htmlPath)
	return nil
}
