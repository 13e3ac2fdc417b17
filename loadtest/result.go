package main

import (
	"fmt"
	"sort"
	"time"
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
	// Storm is what -storm measured (the first run's, with -repeat).
	Storm *stormResult `json:"storm,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printTable prints the results as a Markdown table on stdout, with ratios to
// the last target (the baseline) when there are several.
func printTable(rs []result) {
	fmt.Println()
	fmt.Println("| target | conns | runs | connect/s | RSS B/conn | RSS B/conn after GC | heap B/conn | goroutines added | deliveries/s | lost (all runs) | dup | server CPU ns/delivery | p50 ms | p99 ms | max ms |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		fmt.Printf("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %d | %.0f | %d | %d | %.0f | %.1f | %.1f | %.1f |\n",
			r.Target, r.Conns, r.Runs, r.ConnectRate, r.RSSPerConn, r.RSSPerConnGC, r.HeapPerConn, r.GoroutinesAdded,
			r.DeliveriesPerS, r.Lost, r.Duplicates, r.CPUPerDelivery, r.P50ms, r.P99ms, r.MaxMs)
	}
	for _, r := range rs {
		if s := r.Storm; s != nil && s.Recovery != nil {
			v := s.Recovery
			fmt.Printf("\nstorm, %s: %d connections back, %d missed per room: %d recovered, %d not, %d wrong, %d failed; all current in %.0f ms, peak RSS %.1f MiB",
				r.Target, r.Conns, v.Missed, v.Recovered, v.NotRecovered, v.Wrong, v.Failed, v.CurrentMs, float64(v.PeakRSS)/(1<<20))
		} else if s != nil {
			fmt.Printf("\nstorm, %s: %d connections back in %.0f ms (%.0f/s), peak RSS %.1f MiB, %d answers 503, %d never back",
				r.Target, r.Conns, s.BackMs, s.ConnectRate, float64(s.PeakRSS)/(1<<20), s.Throttled, s.Failed)
		}
	}
	if len(rs) > 1 {
		base := rs[len(rs)-1]
		fmt.Printf("\n\nratios to %s (same run): ", base.Target)
		for _, r := range rs[:len(rs)-1] {
			fmt.Printf("%s: RSS/conn %.3f×, CPU/delivery %.2f×, deliveries/s %.2f×;  ", r.Target,
				r.RSSPerConnGC/base.RSSPerConnGC, r.CPUPerDelivery/base.CPUPerDelivery, r.DeliveriesPerS/base.DeliveriesPerS)
		}
		fmt.Println()
	}
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
