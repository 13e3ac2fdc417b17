// Package deploy holds the monitoring files of the realtime server: a Grafana
// dashboard and Prometheus alert rules (see README.md). It has no Go code;
// its tests check those files against the server:
//
//   - every metric a dashboard query, a dashboard variable or an alert rule
//     uses is one the server (cmd/realtime, with -redis) exports at /metrics;
//   - the rules pass `promtool check rules`, and the alert scenarios in
//     prometheus-alerts.test.yml pass `promtool test rules`;
//   - the dashboard is valid JSON, every panel has the templated data source
//     and a query, and every query is valid PromQL.
//
// promtool comes with Debian's prometheus package (make deps installs it);
// without it the tests fail, they never skip.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.yaml.in/yaml/v3"

	"github.com/realtimehub/realtime/internal/redistest"
	"github.com/realtimehub/realtime/metrics"
)

const (
	dashboardFile = "grafana-dashboard.json"
	rulesFile     = "prometheus-alerts.yml"
	rulesTestFile = "prometheus-alerts.test.yml"
	readmeFile    = "README.md"

	promtoolHint = "promtool is missing; install it with: sudo apt-get install -y prometheus"
)

// The alerts issue 13 asks for, by name.
var requiredAlerts = []string{
	"RealtimePubSubLinkDown", "RealtimeNotReady", "RealtimeSlowConsumerDisconnects",
	"RealtimePublishFailures", "RealtimeFanoutLatencyHigh", "RealtimeConnectionsDropped",
	"RealtimeTargetDown",
}

// dashboard is the part of a Grafana dashboard model the tests look at.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string (Grafana migrates a query variable's to its editor's form)
	Definition string          `json:"definition"`
	Datasource *datasource     `json:"datasource"`
}

// rules is a Prometheus rule file.
type rules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panels returns the dashboard's panels, those of collapsed rows included.
func (d dashboard) panels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// exprs returns every PromQL query of the dashboard's panels.
func (d dashboard) exprs() []string {
	var out []string
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

func loadRules(t *testing.T) rules {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var r rules
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return r
}

func (r rules) exprs() []string {
	var out []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			out = append(out, rule.Expr)
		}
	}
	return out
}

var (
	// PromQL string literals: label values and regexps, never metric names.
	stringLit = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	// The metric names the files may use: ours, the Go and process
	// collectors' and Prometheus's own up.
	metricName = regexp.MustCompile(`\b((?:realtime|go|process)_\w+|up)\b`)
)

// metricNames returns the metric names an expression uses, as they appear
// (histogram series keep their _bucket, _sum or _count).
func metricNames(expr string) []string {
	var out []string
	for _, m := range metricName.FindAllStringSubmatch(stringLit.ReplaceAllString(expr, `""`), -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func TestMetricNamesExtracted(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (le) (rate(realtime_fanout_seconds_bucket{job=~"$job", x="realtime_not_a_metric"}[5m]))) / up{job="realtime"} and go_goroutines > process_resident_memory_bytes`)
	want := []string{"realtime_fanout_seconds_bucket", "up", "go_goroutines", "process_resident_memory_bytes"}
	if !slices.Equal(got, want) {
		t.Fatalf("metricNames = %q, want %q", got, want)
	}
}

// promtool returns the path of promtool, failing the test without it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal(promtoolHint)
	}
	return p
}

// runPromtool runs promtool with args in this directory and fails the test
// with its output if it exits non-zero.
func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The dashboard is valid JSON, with the templated Prometheus data source
// on every panel and query, a job and an instance variable, and a query in
// every panel that is not a row.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: both are needed", d.Title, d.UID)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want 36 or more (data sources by uid)", d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("want a variable datasource of type datasource, query prometheus; got %+v", v)
	}
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || v.Definition == "" {
			t.Errorf("want a query variable %s; got %+v", name, v)
			continue
		}
		if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: datasource %+v, want uid ${datasource}", name, v.Datasource)
		}
	}
	ids := map[int]string{}
	n := 0
	for _, p := range d.panels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q have the same id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		n++
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want {prometheus ${datasource}}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: query %q has no expr", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	if n == 0 {
		t.Fatal("no panels")
	}
}

// grafanaVar is a dashboard variable in a query ($job, ${job},
// $__rate_interval).
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// Every dashboard query is valid PromQL: promtool checks them as recording
// rules of a scratch rule file, with Grafana's variables replaced ($job and
// $instance by .*, the one way they are used: in =~ matchers).
func TestDashboardQueriesParse(t *testing.T) {
	d := loadDashboard(t)
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rs []rule
	for i, e := range d.exprs() {
		e = grafanaVar.ReplaceAllStringFunc(e, func(v string) string {
			if strings.Contains(v, "__rate_interval") || strings.Contains(v, "__interval") {
				return "1m"
			}
			return ".*"
		})
		rs = append(rs, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: e})
	}
	// JSON is YAML: promtool reads it as a rule file.
	b, err := json.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", "--lint=none", f)
}

var anchorSafe = regexp.MustCompile(`[^a-z0-9 -]`)

// The rules parse (promtool check rules, lint problems fatal) and the alert
// scenarios pass (promtool test rules). Every rule is an alert with a for:,
// a severity and the three annotations, its runbook points at a section of
// README.md, and the alerts the issue asks for are there.
func TestRules(t *testing.T) {
	out := runPromtool(t, "check", "rules", "--lint=all", "--lint-fatal", rulesFile)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules: %s", out)
	}
	runPromtool(t, "test", "rules", rulesTestFile)

	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	// GitHub's anchors: headings lower-cased, punctuation dropped, spaces
	// to hyphens.
	anchors := map[string]bool{}
	for line := range strings.Lines(string(readme)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(anchorSafe.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}

	r := loadRules(t)
	var alerts []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert", g.Name, rule.Record)
				continue
			}
			alerts = append(alerts, rule.Alert)
			if _, err := time.ParseDuration(rule.For); err != nil {
				t.Errorf("%s: for %q: %v", rule.Alert, rule.For, err)
			}
			if s := rule.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", rule.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(rule.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", rule.Alert, a)
				}
			}
			anchor := strings.ToLower(rule.Alert)
			if !strings.HasPrefix(rule.Annotations["runbook"], "deploy/"+readmeFile+"#"+anchor) {
				t.Errorf("%s: runbook %q should start with deploy/%s#%s", rule.Alert, rule.Annotations["runbook"], readmeFile, anchor)
			}
			if !anchors[anchor] {
				t.Errorf("%s: %s has no section %q", rule.Alert, readmeFile, rule.Alert)
			}
		}
	}
	for _, a := range requiredAlerts {
		if !slices.Contains(alerts, a) {
			t.Errorf("no alert %s", a)
		}
	}
}

// Every metric the dashboard and the rules use is in the server's /metrics:
// a real server process (cmd/realtime with -redis on a real redis-server)
// with one client that joined a room, published, sent a bad message and
// left, so that the labelled counters have series too.
func TestMetricsExist(t *testing.T) {
	d, r := loadDashboard(t), loadRules(t)
	used := map[string][]string{} // metric name: where it is used
	note := func(where string, exprs ...string) {
		for _, e := range exprs {
			for _, m := range metricNames(e) {
				if !slices.Contains(used[m], where) {
					used[m] = append(used[m], where)
				}
			}
		}
	}
	note(dashboardFile, d.exprs()...)
	for _, v := range d.Templating.List {
		note(dashboardFile+" variable "+v.Name, v.Definition)
	}
	note(rulesFile, r.exprs()...)
	if len(used) == 0 {
		t.Fatal("no metric names found in the dashboard or the rules")
	}

	addr := startServer(t)
	scrape := exercise(t, addr)

	// Names that may be missing from a scrape: a labelled counter has no
	// series (so not even its # HELP and # TYPE lines) until one of its
	// label sets has counted something. exercise makes the ones the files
	// use count, but if one still has none it is checked against
	// metrics.Metrics(), the collector's list, instead.
	labelled := map[string]bool{}
	for _, m := range metrics.Metrics() {
		if len(m.Labels) > 0 {
			labelled[m.Name] = true
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for m := range used {
			if !yield(m) {
				return
			}
		}
	})
	for _, m := range names {
		switch {
		case m == "up":
			// Prometheus adds up to every target itself.
		case scrape[m]:
		case labelled[m]:
			t.Logf("%s has no series in the scrape; metrics.Metrics() lists it (labels, nothing counted yet)", m)
		default:
			t.Errorf("%s (used in %s) is not in the server's /metrics", m, strings.Join(used[m], ", "))
		}
	}
	var unused []string
	for _, m := range metrics.Metrics() {
		if !slices.ContainsFunc(names, func(n string) bool { return n == m.Name || histogramSeries.ReplaceAllString(n, "") == m.Name }) {
			unused = append(unused, m.Name)
		}
	}
	t.Logf("%d metric names used; metrics on no panel or rule: %v", len(names), unused)
}

var histogramSeries = regexp.MustCompile(`_(bucket|sum|count)$`)

// syncBuffer is the server's output: the process writes it while the test
// may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer builds cmd/realtime, starts it on a free port with -redis on
// a new redis-server and returns its address once /readyz answers 200 (the
// pub/sub link delivers). The process is stopped when the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	redis := redistest.Start(t)
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "realtime")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/realtimehub/realtime/cmd/realtime").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/realtime: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs syncBuffer
	cmd := exec.Command(bin, "-addr", addr, "-insecure-dev-auth", "-redis", redis.Addr, "-drain-window", "1s")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// The process this test started (cmd.Process: its PID): SIGTERM,
		// a graceful shutdown, then SIGKILL if it is still there after 5s.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("the server exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server is not ready after 15s (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exercise makes the server count what the labelled metrics count — a
// refused upgrade, commands, an error sent, a close — and returns the
// metric names of a scrape that has them all (histograms as their _bucket,
// _sum and _count series).
func exercise(t *testing.T, addr string) map[string]bool {
	t.Helper()
	// An upgrade without the WebSocket headers: 400.
	resp, err := http.Get("http://" + addr + "/ws?user=alice")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?user=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var connected struct{ Type string }
	if err := c.ReadJSON(&connected); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{`{"type":"join","room":"r"}`, `{"type":"chat","room":"r","data":"hello"}`, `not json`} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// The server has handled the three once it has answered the bad one.
	for {
		var m struct {
			Type string
			Data struct{ Code string }
		}
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for the bad_json error: %v", err)
		}
		if m.Type == "error" {
			break
		}
	}
	c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
	c.Close()

	want := []string{"realtime_closes_total", "realtime_errors_sent_by_code_total", "realtime_commands_total",
		"realtime_upgrades_rejected_total", "realtime_fanout_seconds_bucket", "realtime_redis_ready", "go_goroutines",
		"process_resident_memory_bytes"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, body := scrape(t, addr)
		missing := slices.DeleteFunc(slices.Clone(want), func(m string) bool { return names[m] })
		if len(missing) == 0 && names["realtime_connections"] && strings.Contains(body, "\nrealtime_connections 0\n") {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s /metrics still lacks %v (or still counts a connection):\n%s", missing, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape returns the metric names of the series in /metrics, and the page.
func scrape(t *testing.T, addr string) (map[string]bool, string) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		body.WriteString(line + "\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body.String())
	}
	return names, "\n" + body.String()
}
