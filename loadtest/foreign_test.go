package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
)

// foreignServer is a small server written the way third parties write
// them with gorilla/websocket: a join frame puts a connection in a room
// (no acknowledgement), any other frame goes to the room's other members
// (not back to its sender), and POST /publish sends its body to a room.
// With dropEvery > 0 it loses every dropEvery-th delivery.
type foreignServer struct {
	dropEvery int64
	sent      atomic.Int64

	mu    sync.Mutex
	rooms map[string]map[*foreignConn]bool
	conns []*foreignConn
}

type foreignConn struct {
	mu sync.Mutex // one writer at a time
	ws *websocket.Conn
}

func (s *foreignServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct{ Type, Room string }
	if r.URL.Path == "/publish" {
		body, err := io.ReadAll(r.Body)
		if err != nil || json.Unmarshal(body, &m) != nil {
			http.Error(w, "bad message", http.StatusBadRequest)
			return
		}
		s.broadcast(m.Room, body, nil)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &foreignConn{ws: ws}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	defer ws.Close()
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.Type == "join" {
			s.mu.Lock()
			if s.rooms[m.Room] == nil {
				s.rooms[m.Room] = map[*foreignConn]bool{}
			}
			s.rooms[m.Room][c] = true
			s.mu.Unlock()
			continue
		}
		s.broadcast(m.Room, b, c)
	}
}

// broadcast sends b to the members of room but from.
func (s *foreignServer) broadcast(room string, b []byte, from *foreignConn) {
	s.mu.Lock()
	var to []*foreignConn
	for c := range s.rooms[room] {
		if c != from {
			to = append(to, c)
		}
	}
	s.mu.Unlock()
	for _, c := range to {
		if n := s.sent.Add(1); s.dropEvery > 0 && n%s.dropEvery == 0 {
			continue
		}
		c.mu.Lock()
		c.ws.WriteMessage(websocket.TextMessage, b)
		c.mu.Unlock()
	}
}

// startForeign starts a foreignServer on loopback and returns its ws:// and
// http:// base URLs.
func startForeign(t *testing.T, dropEvery int64) (wsURL, httpURL string) {
	s := &foreignServer{dropEvery: dropEvery, rooms: map[string]map[*foreignConn]bool{}}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.mu.Lock()
		for _, c := range s.conns {
			c.ws.Close()
		}
		s.mu.Unlock()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", srv.URL
}

// runLoadtest runs the load test in-process with args (and -out, -settle)
// and returns its exit status and report.json, decoded.
func runLoadtest(t *testing.T, args ...string) (int, []map[string]any) {
	t.Helper()
	out := t.TempDir()
	code := run("loadtest", append([]string{"-out", out, "-settle", "0s", "-timeout", "60s"}, args...))
	var report []map[string]any
	if b, err := os.ReadFile(filepath.Join(out, "report.json")); err == nil {
		if err := json.Unmarshal(b, &report); err != nil {
			t.Fatalf("report.json: %v", err)
		}
		if h, err := os.ReadFile(filepath.Join(out, "report.html")); err != nil || !strings.Contains(string(h), "<table>") {
			t.Fatalf("report.html: %v", err)
		}
	}
	return code, report
}

// The load test drives a server it knows nothing of through -url: one that
// does not echo to the sender, in rooms, publishing over the WebSocket and
// over HTTP; thresholds that hold exit 0, and what it could not measure
// (no -server-pid, no /debug/stats) is null, not 0.
func TestForeignServer(t *testing.T) {
	ws, base := startForeign(t, 0)
	common := []string{"-url", ws, "-conns", "30", "-msgs", "30", "-rate", "500", "-rooms", "3",
		"-max-lost", "0", "-max-p99", "5s", "-min-rate", "1", "-delivery-wait", "5s"}
	for _, extra := range [][]string{
		{"-publisher-receives=false"},
		{"-publish-url", base + "/publish"}, // nobody sends: every member receives
		{"-publisher-receives=false", "-client", "gorilla"},
	} {
		code, report := runLoadtest(t, append(common, extra...)...)
		if code != 0 || len(report) != 1 {
			t.Fatalf("%v: exit %d, report %v", extra, code, report)
		}
		r := report[0]
		if r["lost"] != 0.0 || r["duplicates"] != 0.0 || r["passed"] != true {
			t.Errorf("%v: lost %v, duplicates %v, passed %v", extra, r["lost"], r["duplicates"], r["passed"])
		}
		for _, k := range []string{"rss_bytes_per_conn", "heap_bytes_per_conn", "goroutines_added", "server_cpu_ns_per_delivery"} {
			if v, ok := r[k]; !ok || v != nil {
				t.Errorf("%v: %s = %v, want null (not measured)", extra, k, v)
			}
		}
		if p99, _ := r["latency_p99_ms"].(float64); p99 <= 0 {
			t.Errorf("%v: latency_p99_ms %v", extra, r["latency_p99_ms"])
		}
		if cmd, _ := r["command"].(string); !strings.Contains(cmd, "-url "+ws) || !strings.HasPrefix(cmd, "loadtest ") {
			t.Errorf("command %q", cmd)
		}
		if want := map[bool]string{false: "lean", true: "gorilla"}[slices.Contains(extra, "gorilla")]; r["client"] != want {
			t.Errorf("%v: client %v, want %s", extra, r["client"], want)
		}
	}
}

// A run that loses messages breaks -max-lost: exit status 1, and the
// report says which threshold and by how much.
func TestForeignServerBrokenThreshold(t *testing.T) {
	ws, _ := startForeign(t, 7)
	code, report := runLoadtest(t, "-url", ws, "-conns", "20", "-msgs", "20", "-rate", "500",
		"-publisher-receives=false", "-max-lost", "0", "-delivery-wait", "300ms")
	if code != 1 || len(report) != 1 {
		t.Fatalf("exit %d, report %v", code, report)
	}
	r := report[0]
	th, _ := r["thresholds"].([]any)
	if lost, _ := r["lost"].(float64); lost == 0 || r["passed"] != false || len(th) != 1 {
		t.Fatalf("lost %v, passed %v, thresholds %v", r["lost"], r["passed"], th)
	}
	v := th[0].(map[string]any)
	if v["flag"] != "-max-lost" || v["broken"] != true || v["value"] != r["lost"] || !strings.Contains(v["says"].(string), "breaks -max-lost 0") {
		t.Fatalf("verdict %v", v)
	}
}
