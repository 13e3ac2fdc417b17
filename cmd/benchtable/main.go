// Command benchtable reads `go test -bench` output on stdin and prints a
// Markdown table: for each benchmark, the median of every metric over the
// repeated runs (-count), one column per hub, and the ratio baseline/ours.
//
// Benchmark names are expected to end in "hub=<name>" (plus the -cpu
// suffix); rows pair "hub=sharded" with "hub=naive".
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// result is one line of benchmark output.
type result struct {
	group, hub, cpu string
	metrics         map[string]float64
}

var lineRE = regexp.MustCompile(`^(Benchmark\S*?)/hub=(\w+)(-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		cpu := strings.TrimPrefix(m[3], "-")
		if cpu == "" {
			cpu = "1"
		}
		res := result{group: m[1], hub: m[2], cpu: cpu, metrics: map[string]float64{}}
		fields := strings.Fields(m[4])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parse %q: %w", sc.Text(), err)
			}
			res.metrics[fields[i+1]] = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// metricsShown are printed in this order when present.
var metricsShown = []string{"ns/delivery", "ns/op", "allocs/op", "B/op"}

func main() {
	results, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark lines with hub=<name> on stdin")
		os.Exit(1)
	}
	type key struct{ group, cpu, hub, metric string }
	samples := map[key][]float64{}
	var rows []string
	seen := map[string]bool{}
	for _, r := range results {
		row := r.group + "\x00" + r.cpu
		if !seen[row] {
			seen[row] = true
			rows = append(rows, row)
		}
		for name, v := range r.metrics {
			k := key{r.group, r.cpu, r.hub, name}
			samples[k] = append(samples[k], v)
		}
	}
	fmt.Println("| benchmark | -cpu | metric | sharded | naive | naive ÷ sharded | runs |")
	fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: |")
	for _, row := range rows {
		group, cpu, _ := strings.Cut(row, "\x00")
		for _, metric := range metricsShown {
			ours := samples[key{group, cpu, "sharded", metric}]
			base := samples[key{group, cpu, "naive", metric}]
			if len(ours) == 0 && len(base) == 0 {
				continue
			}
			cell := func(xs []float64) string {
				if len(xs) == 0 {
					return "–"
				}
				return format(median(xs))
			}
			ratio := "–"
			if len(ours) > 0 && len(base) > 0 && median(ours) > 0 {
				ratio = format(median(base)/median(ours)) + "×"
			}
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %d |\n",
				strings.TrimPrefix(group, "Benchmark"), cpu, metric, cell(ours), cell(base), ratio, max(len(ours), len(base)))
		}
	}
}
