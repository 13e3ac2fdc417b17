package main

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one target's figures. A figure that was not measured has its
// bit in na: it is null in report.json and "n/a" in the tables, never 0.
type result struct {
	Target          string
	Client          string // the load generator's WebSocket client (-client)
	Conns           int
	Rooms           int
	Messages        int
	Runs            int
	ConnectRate     float64
	CPUPerConnect   float64 // server CPU µs per connection during the ramp (dial to join acknowledged)
	RSSPerConn      float64
	RSSPerConnGC    float64
	HeapPerConn     float64
	GoroutinesAdded int
	Deliveries      int64
	Lost            int64 // messages a connection is missing, summed
	Duplicates      int64 // messages a connection got more than once
	DeliveriesPerS  float64
	CPUPerDelivery  float64
	P50ms           float64
	P99ms           float64
	MaxMs           float64
	Latency         []uint64
	Memory          []memPoint
	// Storm is what -storm measured (the first run's, with -repeat).
	Storm *stormResult
	// Thresholds is the verdict on -max-lost, -max-p99 and -min-rate.
	Thresholds []verdict

	na figures // what was not measured
}

// figures is a set of a result's figures, one bit each.
type figures uint16

const (
	figConnectRate figures = 1 << iota // the ramp's (not per pod)
	figRSS                             // needs the server's PID
	figRSSGC                           // needs the PID and /debug/stats?gc=1
	figHeap                            // needs /debug/stats
	figGoroutines                      // needs /debug/stats
	figFanout                          // deliveries, lost, duplicates, deliveries/s: needs a fan-out
	figCPU                             // needs the PID and deliveries
	figLatency                         // needs deliveries
	figCPUConnect                      // needs the PID and a ramp

	figIdle = figRSS | figRSSGC | figHeap | figGoroutines
	figAll  = figConnectRate | figIdle | figFanout | figCPU | figLatency | figCPUConnect
)

// has reports whether figure f was measured.
func (r *result) has(f figures) bool { return r.na&f == 0 }

// resultJSON is a result as report.json has it (an array of these, one per
// target): see loadtest/README.md. Pointers are null when not measured.
type resultJSON struct {
	Target          string       `json:"target"`
	Conns           int          `json:"connections"`
	Rooms           int          `json:"rooms"`
	ConnectRate     *float64     `json:"connect_rate_per_s"`
	CPUPerConnect   *float64     `json:"server_cpu_us_per_connect"`
	RSSPerConn      *float64     `json:"rss_bytes_per_conn"`
	RSSPerConnGC    *float64     `json:"rss_bytes_per_conn_after_gc"`
	HeapPerConn     *float64     `json:"heap_bytes_per_conn"`
	GoroutinesAdded *int         `json:"goroutines_added"`
	Messages        int          `json:"messages"`
	Deliveries      *int64       `json:"deliveries"`
	Lost            *int64       `json:"lost"`
	Duplicates      *int64       `json:"duplicates"`
	DeliveriesPerS  *float64     `json:"deliveries_per_s"`
	CPUPerDelivery  *float64     `json:"server_cpu_ns_per_delivery"`
	P50ms           *float64     `json:"latency_p50_ms"`
	P99ms           *float64     `json:"latency_p99_ms"`
	MaxMs           *float64     `json:"latency_max_ms"`
	Latency         []uint64     `json:"latency_buckets_5pct_from_1us"`
	Runs            int          `json:"runs"`
	Memory          []memPoint   `json:"rss_while_ramping"`
	Storm           *stormResult `json:"storm,omitempty"`
	Command         string       `json:"command"`
	Client          string       `json:"client"`
	ServerEnv       []string     `json:"server_env,omitempty"` // inherited settings that are not the defaults
	Thresholds      []verdict    `json:"thresholds"`
	Passed          bool         `json:"passed"`
}

// opt returns &v, or nil when figure f was not measured.
func opt[T any](r *result, f figures, v T) *T {
	if !r.has(f) {
		return nil
	}
	return &v
}

// wire returns r as report.json has it; command is the command line.
func (r *result) wire(command string) resultJSON {
	mem := r.Memory
	if mem == nil {
		mem = []memPoint{}
	}
	th := r.Thresholds
	if th == nil {
		th = []verdict{}
	}
	return resultJSON{
		Target: r.Target, Conns: r.Conns, Rooms: r.Rooms, Messages: r.Messages, Runs: r.Runs,
		ConnectRate:     opt(r, figConnectRate, r.ConnectRate),
		CPUPerConnect:   opt(r, figCPUConnect, r.CPUPerConnect),
		RSSPerConn:      opt(r, figRSS, r.RSSPerConn),
		RSSPerConnGC:    opt(r, figRSSGC, r.RSSPerConnGC),
		HeapPerConn:     opt(r, figHeap, r.HeapPerConn),
		GoroutinesAdded: opt(r, figGoroutines, r.GoroutinesAdded),
		Deliveries:      opt(r, figFanout, r.Deliveries),
		Lost:            opt(r, figFanout, r.Lost),
		Duplicates:      opt(r, figFanout, r.Duplicates),
		DeliveriesPerS:  opt(r, figFanout, r.DeliveriesPerS),
		CPUPerDelivery:  opt(r, figCPU, r.CPUPerDelivery),
		P50ms:           opt(r, figLatency, r.P50ms),
		P99ms:           opt(r, figLatency, r.P99ms),
		MaxMs:           opt(r, figLatency, r.MaxMs),
		Latency:         r.Latency, Memory: mem, Storm: r.Storm,
		Command: command, Client: r.Client, ServerEnv: serverEnv, Thresholds: th, Passed: passed(th),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// num formats figure f of r, v, with prec decimals, or "n/a".
func (r *result) num(f figures, v float64, prec int) string {
	if !r.has(f) || math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

// cells returns the table's cells of r, in the order of tableHeads.
func (r *result) cells() []string {
	return []string{r.Target, strconv.Itoa(r.Conns), strconv.Itoa(r.Runs),
		r.num(figConnectRate, r.ConnectRate, 0), r.num(figCPUConnect, r.CPUPerConnect, 0), r.num(figRSS, r.RSSPerConn, 0), r.num(figRSSGC, r.RSSPerConnGC, 0),
		r.num(figHeap, r.HeapPerConn, 0), r.num(figGoroutines, float64(r.GoroutinesAdded), 0),
		r.num(figFanout, r.DeliveriesPerS, 0), r.num(figFanout, float64(r.Lost), 0), r.num(figFanout, float64(r.Duplicates), 0),
		r.num(figCPU, r.CPUPerDelivery, 0), r.num(figLatency, r.P50ms, 1), r.num(figLatency, r.P99ms, 1), r.num(figLatency, r.MaxMs, 1)}
}

// tableHeads are the columns of the result tables (Markdown and HTML).
var tableHeads = []string{"target", "conns", "runs", "connect/s", "server CPU µs/connect", "RSS B/conn", "RSS B/conn after GC", "heap B/conn",
	"goroutines added", "deliveries/s", "lost (all runs)", "dup", "server CPU ns/delivery", "p50 ms", "p99 ms", "max ms"}

// printTable prints the results as a Markdown table on stdout, with ratios to
// the last target (the baseline) when there are several.
func printTable(rs []result) {
	fmt.Println()
	fmt.Println("| " + strings.Join(tableHeads, " | ") + " |")
	fmt.Println("| --- |" + strings.Repeat(" ---: |", len(tableHeads)-1))
	for _, r := range rs {
		fmt.Println("| " + strings.Join(r.cells(), " | ") + " |")
	}
	for _, r := range rs {
		if s := r.Storm; s != nil && s.Recovery != nil {
			v := s.Recovery
			fmt.Printf("\nstorm, %s: %d connections back, %d missed per room: %d recovered, %d not, %d wrong, %d failed; all current in %.0f ms, peak RSS %.1f MiB",
				r.Target, r.Conns, v.Missed, v.Recovered, v.NotRecovered, v.Wrong, v.Failed, v.CurrentMs, float64(v.PeakRSS)/(1<<20))
		} else if s != nil {
			fmt.Printf("\nstorm, %s: %d connections back in %.0f ms (%.0f/s), peak RSS %s, %d answers 503, %d never back",
				r.Target, r.Conns, s.BackMs, s.ConnectRate, mib(s.PeakRSS), s.Throttled, s.Failed)
		}
	}
	if len(rs) > 1 {
		base := rs[len(rs)-1]
		fmt.Printf("\n\nratios to %s (same run): ", base.Target)
		ratio := func(r *result, f figures, v, b float64, prec int, unit string) string {
			if !r.has(f) || !base.has(f) || b == 0 {
				return "n/a"
			}
			return strconv.FormatFloat(v/b, 'f', prec, 64) + unit
		}
		for _, r := range rs[:len(rs)-1] {
			fmt.Printf("%s: connect/s %s, CPU/connect %s, RSS/conn %s, CPU/delivery %s, deliveries/s %s;  ", r.Target,
				ratio(&r, figConnectRate, r.ConnectRate, base.ConnectRate, 2, "×"), ratio(&r, figCPUConnect, r.CPUPerConnect, base.CPUPerConnect, 2, "×"),
				ratio(&r, figRSSGC, r.RSSPerConnGC, base.RSSPerConnGC, 3, "×"), ratio(&r, figCPU, r.CPUPerDelivery, base.CPUPerDelivery, 2, "×"),
				ratio(&r, figFanout, r.DeliveriesPerS, base.DeliveriesPerS, 2, "×"))
		}
	}
	fmt.Println()
}

// mib formats a peak RSS in MiB, or "n/a".
func mib(b *int64) string {
	if b == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(*b)/(1<<20))
}

// medianResult returns the median of each figure over runs of one target
// (the latency histogram is the merged one, lost and duplicated messages the
// sums). A figure is the median of the runs that measured it, and not
// measured when none did.
func medianResult(rs []result) result {
	m := rs[0]
	m.na = figAll
	for _, r := range rs {
		m.na &= r.na
	}
	med := func(f figures, get func(r result) float64) float64 {
		var xs []float64
		for _, r := range rs {
			if r.has(f) {
				xs = append(xs, get(r))
			}
		}
		if len(xs) == 0 {
			return 0
		}
		sort.Float64s(xs)
		if n := len(xs); n%2 == 1 {
			return xs[n/2]
		} else {
			return (xs[n/2-1] + xs[n/2]) / 2
		}
	}
	m.Runs = len(rs)
	m.ConnectRate = med(figConnectRate, func(r result) float64 { return r.ConnectRate })
	m.CPUPerConnect = med(figCPUConnect, func(r result) float64 { return r.CPUPerConnect })
	m.RSSPerConn = med(figRSS, func(r result) float64 { return r.RSSPerConn })
	m.RSSPerConnGC = med(figRSSGC, func(r result) float64 { return r.RSSPerConnGC })
	m.HeapPerConn = med(figHeap, func(r result) float64 { return r.HeapPerConn })
	m.GoroutinesAdded = int(med(figGoroutines, func(r result) float64 { return float64(r.GoroutinesAdded) }))
	m.Deliveries = int64(med(figFanout, func(r result) float64 { return float64(r.Deliveries) }))
	m.Lost, m.Duplicates = 0, 0
	for _, r := range rs {
		m.Lost += r.Lost // losses are summed over runs, never hidden by a median
		m.Duplicates += r.Duplicates
	}
	m.DeliveriesPerS = med(figFanout, func(r result) float64 { return r.DeliveriesPerS })
	m.CPUPerDelivery = med(figCPU, func(r result) float64 { return r.CPUPerDelivery })
	m.P50ms = med(figLatency, func(r result) float64 { return r.P50ms })
	m.P99ms = med(figLatency, func(r result) float64 { return r.P99ms })
	m.MaxMs = med(figLatency, func(r result) float64 { return r.MaxMs })
	m.Latency = make([]uint64, histBuckets)
	for _, r := range rs {
		for i, n := range r.Latency {
			m.Latency[i] += n
		}
	}
	return m
}
