package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// thresholds are -max-lost, -max-p99 and -min-rate: a run that breaks one
// exits with status 1, and the reports say which and by how much.
type thresholds struct {
	maxLost int64         // lost messages (all runs), -1: none
	maxP99  time.Duration // latency p99, 0: none
	minRate float64       // deliveries per second, 0: none
}

// any reports whether any threshold is set.
func (th thresholds) any() bool { return th.maxLost >= 0 || th.maxP99 > 0 || th.minRate > 0 }

// verdict is one threshold judged on one target's figures.
type verdict struct {
	Flag   string   `json:"flag"`  // -max-lost, -max-p99 or -min-rate
	Limit  float64  `json:"limit"` // in the unit of value
	Value  *float64 `json:"value"` // null when the run did not measure it: then it is broken
	Unit   string   `json:"unit"`  // messages, ms or deliveries/s
	Broken bool     `json:"broken"`
	Says   string   `json:"says"` // e.g. "lost 12 > -max-lost 0"
}

// judge returns the verdict of each threshold set on r. A figure that was
// not measured breaks its threshold: nothing shows it held.
func (th thresholds) judge(r *result) []verdict {
	var out []verdict
	check := func(flag, what, unit string, measured bool, v, limit float64, broken func(v float64) bool, limitText string) {
		vd := verdict{Flag: flag, Limit: limit, Unit: unit}
		if !measured {
			vd.Broken, vd.Says = true, fmt.Sprintf("%s not measured (%s %s)", what, flag, limitText)
		} else {
			vd.Value, vd.Broken = &v, broken(v)
			rel := map[bool]string{true: "breaks", false: "within"}[vd.Broken]
			vd.Says = fmt.Sprintf("%s %s %s %s %s", what, trimFloat(v), unit, rel, flag+" "+limitText)
		}
		out = append(out, vd)
	}
	if th.maxLost >= 0 {
		check("-max-lost", "lost", "messages", r.has(figFanout), float64(r.Lost), float64(th.maxLost),
			func(v float64) bool { return v > float64(th.maxLost) }, strconv.FormatInt(th.maxLost, 10))
	}
	if th.maxP99 > 0 {
		check("-max-p99", "latency p99", "ms", r.has(figLatency), r.P99ms, ms(th.maxP99),
			func(v float64) bool { return v > ms(th.maxP99) }, th.maxP99.String())
	}
	if th.minRate > 0 {
		check("-min-rate", "rate", "deliveries/s", r.has(figFanout), r.DeliveriesPerS, th.minRate,
			func(v float64) bool { return v < th.minRate }, trimFloat(th.minRate))
	}
	return out
}

// trimFloat formats v for a verdict: whole numbers and values of 100 or
// more without decimals (12, 1250), others with two (3.50, 0.25).
func trimFloat(v float64) string {
	if v >= 100 || v == float64(int64(v)) {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// passed reports whether no verdict is broken.
func passed(vs []verdict) bool {
	for _, v := range vs {
		if v.Broken {
			return false
		}
	}
	return true
}

// judgeAll judges every result, prints the verdicts (stdout) and each broken
// threshold (stderr), and reports whether all held.
func (th thresholds) judgeAll(rs []result) bool {
	if !th.any() {
		return true
	}
	ok := true
	fmt.Println("\nthresholds:")
	for i := range rs {
		rs[i].Thresholds = th.judge(&rs[i])
		for _, v := range rs[i].Thresholds {
			mark := "ok    "
			if v.Broken {
				mark, ok = "BROKEN", false
				fmt.Fprintf(os.Stderr, "loadtest: threshold broken: %s: %s\n", rs[i].Target, v.Says)
			}
			fmt.Printf("  %s %s: %s\n", mark, rs[i].Target, v.Says)
		}
	}
	if !ok {
		fmt.Println("exit status 1: " + strings.Join(brokenFlags(rs), ", ") + " broken")
	}
	return ok
}

// brokenFlags lists the thresholds broken by any result, once each.
func brokenFlags(rs []result) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		for _, v := range r.Thresholds {
			if v.Broken && !seen[v.Flag] {
				seen[v.Flag] = true
				out = append(out, v.Flag)
			}
		}
	}
	return out
}
