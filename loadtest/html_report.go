package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// memPoint is the server's RSS at some number of connections.
type memPoint struct {
	Conns int   `json:"connections"`
	RSS   int64 `json:"rss_bytes"`
}

var palette = []string{"#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"}

// The charts are SVG drawn in a w×h box, scaled down to the page's width.
const chartW, chartH = 640, 300

// svgOpen starts a chart of width w and height h that shrinks with the page.
func svgOpen(b *strings.Builder, w, h int) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" style="max-width:100%%;height:auto" font-family="sans-serif" font-size="11">`, w, h, w, h)
}

// svgChart draws lines (one per series) with labelled axes; logX puts the
// x axis on a log scale. Ticks fall on round values (1, 2 or 5 × 10^k;
// powers of ten on a log scale), labelled as people write numbers.
func svgChart(title, xLabel, yLabel string, names []string, series [][][2]float64, logX bool) string {
	const w, h, left, bottom, top, right = chartW, chartH, 70, 40, 30, 150
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	tx := func(x float64) float64 {
		if logX {
			return math.Log10(math.Max(x, 1e-9))
		}
		return x
	}
	for _, s := range series {
		for _, p := range s {
			minX, maxX, maxY = math.Min(minX, tx(p[0])), math.Max(maxX, tx(p[0])), math.Max(maxY, p[1])
		}
	}
	if math.IsInf(minX, 0) {
		minX, maxX = 0, 1
	}
	var xTicks []float64 // in axis units (log10 on a log scale)
	if logX {
		minX, maxX = math.Floor(minX), math.Max(math.Ceil(maxX), math.Floor(minX)+1)
		for e := minX; e <= maxX; e++ {
			xTicks = append(xTicks, e)
			if maxX-minX <= 2 && e < maxX { // few decades: 2 and 5 between
				xTicks = append(xTicks, e+math.Log10(2), e+math.Log10(5))
			}
		}
	} else {
		xTicks = niceTicks(minX, maxX, 5)
		minX, maxX = xTicks[0], xTicks[len(xTicks)-1]
	}
	yTicks := niceTicks(0, maxY, 5)
	maxY = yTicks[len(yTicks)-1]
	px := func(x float64) float64 { return left + (tx(x)-minX)/(maxX-minX)*(w-left-right) }
	pxAxis := func(v float64) float64 { return left + (v-minX)/(maxX-minX)*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/maxY*(h-bottom-top) }
	var b strings.Builder
	svgOpen(&b, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, left, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`,
		left, h-bottom, w-right, h-bottom, left, top, left, h-bottom)
	for _, y := range yTicks {
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text><line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`,
			left-5, py(y)+4, tickLabel(y, yTicks), left, py(y), w-right, py(y))
	}
	for _, v := range xTicks {
		label := tickLabel(v, xTicks)
		if logX {
			label = groupThousands(strconv.FormatFloat(math.Round(math.Pow(10, v)*1e6)/1e6, 'f', -1, 64))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text><line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>`,
			pxAxis(v), h-bottom+15, label, pxAxis(v), h-bottom, pxAxis(v), h-bottom+4)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (w-right+left)/2, h-5, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`, h/2, h/2, html.EscapeString(yLabel))
	for i, s := range series {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range s {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`,
			w-right+10, top+10+i*16, color, w-right+26, top+14+i*16, html.EscapeString(names[i]))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// svgBars draws one horizontal bar per target, each labelled with its value
// in unit, or "n/a" where measured[i] is false.
func svgBars(title, unit string, names []string, values []float64, measured []bool) string {
	const w, left, right, top, barH, gap = chartW, 130, 90, 30, 22, 8
	h := top + len(names)*(barH+gap) + 30
	maxV := 0.0
	for i, v := range values {
		if measured[i] {
			maxV = math.Max(maxV, v)
		}
	}
	ticks := niceTicks(0, maxV, 5)
	maxV = ticks[len(ticks)-1]
	px := func(v float64) float64 { return left + v/maxV*(w-left-right) }
	var b strings.Builder
	svgOpen(&b, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, left, html.EscapeString(title))
	axisY := top + len(names)*(barH+gap)
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			px(t), top-4, px(t), axisY, px(t), axisY+15, tickLabel(t, ticks))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, left, top-4, left, axisY)
	for i, name := range names {
		y := top + i*(barH+gap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-6, y+barH/2+4, html.EscapeString(name))
		if !measured[i] {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#777">n/a</text>`, left+6, y+barH/2+4)
			continue
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%s %s</text>`,
			left, y, px(values[i])-left, barH, palette[i%len(palette)], px(values[i])+5, y+barH/2+4, fmtNumber(values[i]), html.EscapeString(unit))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceTicks returns about n round values from at most lo up to at least
// hi, spaced by 1, 2 or 5 × 10^k.
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(max(n-1, 1)) * 0.7 // a step a little smaller than even is fine: a tick or two more
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	first := math.Floor(lo/step) * step
	var out []float64
	for v := first; ; v += step {
		v = math.Round(v/step) * step // no 0.30000000000000004
		out = append(out, v)
		if v >= hi-step*1e-9 {
			return out
		}
	}
}

// tickLabel formats tick v with as many decimals as its axis' step needs.
func tickLabel(v float64, ticks []float64) string {
	if len(ticks) < 2 {
		return fmtNumber(v)
	}
	step := math.Abs(ticks[1] - ticks[0])
	decimals := 0
	if step > 0 && step < 1 {
		decimals = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return groupThousands(strconv.FormatFloat(v, 'f', decimals, 64))
}

// fmtNumber formats v as people write numbers: 0.25, 3.5, 42, 1,250,
// 1,000,000 (never 1e+03).
func fmtNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0 || a >= 100:
		return groupThousands(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

// groupThousands puts commas between thousands of a formatted number.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}

const reportStyle = `<style>
body{font:14px system-ui,sans-serif;margin:1rem;max-width:70rem}
code{white-space:pre-wrap;overflow-wrap:anywhere}code .w{white-space:nowrap}
.table{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:.2rem .3rem;text-align:right}
th{font-weight:600;vertical-align:bottom}
td{white-space:nowrap;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}
td.na{color:#777}
.ok{color:#2ca02c}.broken{color:#d62728;font-weight:bold}
@media (max-width:600px){body{margin:.5rem}table{font-size:11px}}
</style>`

// writeHTML writes a self-contained report: the table, the thresholds'
// verdicts, and the charts of what was measured.
func writeHTML(path string, rs []result, cmdline string) error {
	var names []string
	var lat, mem [][][2]float64
	anyLat, anyMem := false, false
	for _, r := range rs {
		names = append(names, r.Target)
		var total uint64
		for _, n := range r.Latency {
			total += n
		}
		var cdf [][2]float64
		var seen uint64
		for b, n := range r.Latency {
			if n == 0 {
				continue
			}
			seen += n
			cdf = append(cdf, [2]float64{float64(bucketUpper(b)) / float64(time.Millisecond), float64(seen) / float64(total)})
		}
		lat = append(lat, cdf)
		anyLat = anyLat || len(cdf) > 0
		var m [][2]float64
		for _, p := range r.Memory {
			m = append(m, [2]float64{float64(p.Conns), float64(p.RSS) / (1 << 20)})
		}
		mem = append(mem, m)
		anyMem = anyMem || len(m) > 1
	}
	var b strings.Builder
	b.WriteString(`<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>realtime load test</title>` + reportStyle + `<h1>realtime load test</h1>`)
	fmt.Fprintf(&b, "<p>%s<br><code>%s</code></p>", time.Now().UTC().Format(time.RFC1123), commandHTML(cmdline))
	b.WriteString(`<div class="table"><table><tr>`)
	for _, h := range tableHeads {
		// A narrow page may break a heading after a slash too.
		fmt.Fprintf(&b, "<th>%s</th>", strings.ReplaceAll(html.EscapeString(h), "/", "/<wbr>"))
	}
	b.WriteString("</tr>")
	for _, r := range rs {
		b.WriteString("<tr>")
		for _, c := range r.cells() {
			if c == "n/a" {
				b.WriteString(`<td class="na">n/a</td>`)
			} else {
				fmt.Fprintf(&b, "<td>%s</td>", html.EscapeString(c))
			}
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table></div>")
	b.WriteString(thresholdsHTML(rs))
	if anyLat {
		b.WriteString("<h2>Latency</h2>" + svgChart("fan-out latency, cumulative", "ms (log scale)", "fraction delivered", names, lat, true))
	}
	b.WriteString("<h2>Per target</h2>")
	type barChart struct {
		title, unit, needs string
		f                  figures
		get                func(r *result) float64
	}
	rss := barChart{"server RSS per idle connection, after GC", "bytes", "the server's PID and /debug/stats (ours and the baseline)", figRSSGC,
		func(r *result) float64 { return r.RSSPerConnGC }}
	if !anyHas(rs, figRSSGC) { // a foreign server with -server-pid: RSS, but no GC on demand
		rss = barChart{"server RSS per idle connection (no GC on demand)", "bytes", "the server's PID: -server-pid with -url", figRSS,
			func(r *result) float64 { return r.RSSPerConn }}
	}
	for _, bar := range []barChart{
		{"server CPU per delivery", "µs", "the server's PID: -server-pid with -url", figCPU, func(r *result) float64 { return r.CPUPerDelivery / 1000 }},
		rss,
		{"deliveries per second", "/s", "a fan-out", figFanout, func(r *result) float64 { return r.DeliveriesPerS }},
	} {
		values, measured := make([]float64, len(rs)), make([]bool, len(rs))
		anyMeasured := false
		for i := range rs {
			values[i], measured[i] = bar.get(&rs[i]), rs[i].has(bar.f)
			anyMeasured = anyMeasured || measured[i]
		}
		if anyMeasured {
			b.WriteString(svgBars(bar.title, bar.unit, names, values, measured))
		} else {
			fmt.Fprintf(&b, "<p>%s: not measured (it needs %s).</p>", html.EscapeString(bar.title), html.EscapeString(bar.needs))
		}
	}
	if anyMem {
		b.WriteString("<h2>Memory</h2>" + svgChart("server RSS while connections ramp (first run)", "connections", "RSS MiB", names, mem, false))
	}
	if ramp, ok := stormRamps(rs); ok {
		b.WriteString("<h2>Reconnect storm</h2>" + svgChart("connections back after all were dropped at once (first run)", "ms since the drop", "connections rejoined", names, ramp, false))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// anyHas reports whether any result measured figure f.
func anyHas(rs []result, f figures) bool {
	for i := range rs {
		if rs[i].has(f) {
			return true
		}
	}
	return false
}

// commandHTML is the command line for the page: it wraps between words,
// never at a word's hyphen (-max-lost), and a word too long for a line
// breaks anywhere. What is copied is the command as run.
func commandHTML(cmdline string) string {
	words := strings.Split(cmdline, " ")
	for i, w := range words {
		if len(w) <= 40 {
			words[i] = `<span class="w">` + html.EscapeString(w) + `</span>`
		} else {
			words[i] = html.EscapeString(w)
		}
	}
	return strings.Join(words, " ")
}

// thresholdsHTML lists the verdicts of -max-lost, -max-p99 and -min-rate,
// broken ones first, or nothing when none was set.
func thresholdsHTML(rs []result) string {
	var b strings.Builder
	for _, broken := range []bool{true, false} {
		for _, r := range rs {
			for _, v := range r.Thresholds {
				if v.Broken == broken {
					mark := `<span class="ok">ok</span>`
					if broken {
						mark = `<span class="broken">BROKEN</span>`
					}
					fmt.Fprintf(&b, "<li>%s %s: %s</li>", mark, html.EscapeString(r.Target), html.EscapeString(v.Says))
				}
			}
		}
	}
	if b.Len() == 0 {
		return ""
	}
	verdict := "every threshold held (exit status 0)"
	for _, r := range rs {
		if !passed(r.Thresholds) {
			verdict = "broken: " + strings.Join(brokenFlags(rs), ", ") + " (exit status 1)"
			break
		}
	}
	return "<h2>Thresholds</h2><p>" + html.EscapeString(verdict) + "</p><ul>" + b.String() + "</ul>"
}

// stormRamps returns each target's storm ramp, and whether any target ran
// one.
func stormRamps(rs []result) ([][][2]float64, bool) {
	var out [][][2]float64
	any := false
	for _, r := range rs {
		var pts [][2]float64
		if r.Storm != nil {
			any = true
			for _, p := range r.Storm.Ramp {
				pts = append(pts, [2]float64{p.Ms, float64(p.Joined)})
			}
		}
		out = append(out, pts)
	}
	return out, any
}
