package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTicksReadable(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0, 1234, "0 500 1,000 1,500"},
		{0, 19500, "0 5,000 10,000 15,000 20,000"},
		{0, 1, "0.0 0.2 0.4 0.6 0.8 1.0"},
		{0, 0.037, "0.00 0.01 0.02 0.03 0.04"},
		{0, 0, "0.0 0.2 0.4 0.6 0.8 1.0"},
		{0, 2_500_000, "0 500,000 1,000,000 1,500,000 2,000,000 2,500,000"},
	} {
		ticks := niceTicks(c.lo, c.hi, 5)
		var got []string
		for _, v := range ticks {
			got = append(got, tickLabel(v, ticks))
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("ticks of [%v, %v]: %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
	for v, want := range map[float64]string{1000: "1,000", 1234567: "1,234,567", 0.81: "0.81", 12.5: "12.5", 0: "0"} {
		if got := fmtNumber(v); got != want {
			t.Errorf("fmtNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

// The per-target figures are bars (CPU was drawn as flat line segments on
// a numeric axis), a figure not measured is n/a, ticks never read 1e+03,
// and the table sits in a box of its own that scrolls when the page is too
// narrow.
func TestHTMLReport(t *testing.T) {
	lat := make([]uint64, histBuckets)
	lat[150], lat[160] = 90, 10
	rs := []result{
		{Target: "ours", Conns: 19500, Runs: 1, RSSPerConnGC: 1100, CPUPerDelivery: 812, DeliveriesPerS: 1234567, Latency: lat,
			Memory: []memPoint{{0, 8 << 20}, {19500, 30 << 20}}},
		{Target: "theirs", Conns: 19500, Runs: 1, DeliveriesPerS: 5000, Lost: 3, Latency: lat, na: figIdle | figCPU},
	}
	thresholds{maxLost: 0}.judgeAll(rs)
	path := filepath.Join(t.TempDir(), "report.html")
	if err := writeHTML(path, rs, `loadtest -hello '{"type":"join"}'`); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	page := string(b)
	for _, want := range []string{`<div class="table"><table>`, `.table{overflow-x:auto`, `viewBox="0 0 640`, "<rect", ">n/a<",
		"server CPU per delivery", "BROKEN", "theirs: lost 3 messages breaks -max-lost 0", "20,000", "&#39;{&#34;type&#34;:&#34;join&#34;}&#39;"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(page, "e+") {
		t.Error("a tick in exponent notation")
	}
	// Lines are for curves only: latency (both targets) and memory (ours).
	if n := strings.Count(page, "<polyline"); n != 3 {
		t.Errorf("%d polylines, want 3", n)
	}
}
