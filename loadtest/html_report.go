package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
	"time"
)

// memPoint is the server's RSS at some number of connections.
type memPoint struct {
	Conns int   `json:"connections"`
	RSS   int64 `json:"rss_bytes"`
}

var palette = []string{"#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#8c564b"}

// svgChart draws lines (one per series) in a w×h box with labelled axes.
// logX puts the x axis on a log scale.
func svgChart(title, xLabel, yLabel string, names []string, series [][][2]float64, logX bool) string {
	const w, h, left, bottom, top, right = 640, 300, 70, 40, 30, 150
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
	if math.IsInf(minX, 0) || maxX == minX {
		maxX = minX + 1
	}
	if maxY == 0 {
		maxY = 1
	}
	px := func(x float64) float64 { return left + (tx(x)-minX)/(maxX-minX)*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/maxY*(h-bottom-top) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold">%s</text>`, left, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`,
		left, h-bottom, w-right, h-bottom, left, top, left, h-bottom)
	for i := 0; i <= 4; i++ { // y ticks
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%.3g</text><line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#eee"/>`,
			left-5, py(y)+4, y, left, py(y), w-right, py(y))
	}
	for i := 0; i <= 4; i++ { // x ticks
		v := minX + (maxX-minX)*float64(i)/4
		label := v
		if logX {
			label = math.Pow(10, v)
		}
		x := left + float64(i)/4*(w-left-right)
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%.3g</text>`, x, h-bottom+15, label)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (w-right+left)/2, h-5, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`, (h)/2, h/2, html.EscapeString(yLabel))
	for i, s := range series {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range s {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="3" fill="%s"/><text x="%d" y="%d">%s</text>`,
			w-right+10, top+10+i*16, color, w-right+26, top+14+i*16, html.EscapeString(names[i]))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// writeHTML writes a self-contained report: the table and three charts.
func writeHTML(path string, rs []result, cmdline string) error {
	var names []string
	var lat, mem, cpu [][][2]float64
	for i, r := range rs {
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
		var m [][2]float64
		for _, p := range r.Memory {
			m = append(m, [2]float64{float64(p.Conns), float64(p.RSS) / (1 << 20)})
		}
		mem = append(mem, m)
		cpu = append(cpu, [][2]float64{{float64(i), r.CPUPerDelivery / 1000}, {float64(i) + 0.8, r.CPUPerDelivery / 1000}})
	}
	var b strings.Builder
	b.WriteString(`<!doctype html><meta charset="utf-8"><title>realtime load test</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse}.ok{color:#2ca02c}.broken{color:#d62728;font-weight:bold}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}</style>
<h1>realtime load test</h1>`)
	fmt.Fprintf(&b, "<p>%s<br><code>%s</code></p>", time.Now().UTC().Format(time.RFC1123), html.EscapeString(cmdline))
	b.WriteString("<table><tr>")
	for _, h := range tableHeads {
		fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(h))
	}
	b.WriteString("</tr>")
	for _, r := range rs {
		b.WriteString("<tr>")
		for _, c := range r.cells() {
			fmt.Fprintf(&b, "<td>%s</td>", html.EscapeString(c))
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table>")
	b.WriteString(thresholdsHTML(rs))
	b.WriteString("<h2>Latency</h2>" + svgChart("fan-out latency, cumulative", "ms (log scale)", "fraction delivered", names, lat, true))
	b.WriteString("<h2>Memory</h2>" + svgChart("server RSS while connections ramp (first run)", "connections", "RSS MiB", names, mem, false))
	b.WriteString("<h2>CPU</h2>" + svgChart("server CPU per delivery (µs, one bar per target)", "target", "µs", names, cpu, false))
	if ramp, ok := stormRamps(rs); ok {
		b.WriteString("<h2>Reconnect storm</h2>" + svgChart("connections back after all were dropped at once (first run)", "ms since the drop", "connections rejoined", names, ramp, false))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
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
