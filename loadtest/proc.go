package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverArgs are the flags every realtime server process of the load test
// gets besides its addresses (harnessArgs): none unless the load needs one,
// so that what is measured is the server's defaults.
var serverArgs []string

// serverEnv is what the load test's environment sets that changes how the
// servers it starts run (they inherit it): REALTIME_* (every flag of ours
// has one), GOGC, GOMEMLIMIT, GODEBUG. The run says so and the report keeps
// it, since the figures are then not the defaults'.
var serverEnv []string

// inheritedServerEnv returns the entries of env that serverEnv keeps.
func inheritedServerEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "REALTIME_") || name == "GOGC" || name == "GOMEMLIMIT" || name == "GODEBUG" {
			out = append(out, kv)
		}
	}
	return out
}

// defaultRateLimit is the server's default per-connection message rate.
const defaultRateLimit = 50

// harnessArgs returns the server flags the load of c needs beyond the
// defaults: with -rate 0 (as fast as deliveries keep up) or more than the
// default 50 messages a second per publishing connection (message k is sent
// by the connection of room k mod -rooms), the per-connection rate limit is
// turned off. Each room's publisher is in its room alone, so the default
// room limit is never in the way.
func harnessArgs(c *config) []string {
	if c.rate == 0 || c.rate/float64(c.rooms) > defaultRateLimit {
		return []string{"-rate-limit", "-1"}
	}
	return nil
}

// binDir is where the server binaries (realtime, baseline) are: beside the
// load test's own executable unless -bin-dir says otherwise. `make loadtest`
// builds all three there.
var binDir string

// serverBinary returns the path of the binary that serves impl ("realtime"
// or "baseline"), or an error that says how to build it.
func serverBinary(impl string) (string, error) {
	dir := binDir
	if dir == "" {
		self, err := os.Executable()
		if err != nil {
			return "", err
		}
		dir = filepath.Dir(self)
	}
	path := filepath.Join(dir, impl)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no %s server binary at %s: build it with `go build -o %s ./cmd/%s` (make loadtest does)", impl, path, path, impl)
	}
	return path, nil
}

// serverProc is a server process the load test started.
type serverProc struct {
	impl    string
	pid     int // with -url: the external server's PID, or 0
	cmd     *exec.Cmd
	httpURL string // http://addr of /healthz, /readyz, /metrics, /debug/stats
	wsURL   string // the WebSocket URL clients dial
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer starts the impl server binary and waits for /healthz. door is
// "http" or "raw" (ours only). A port found free can be taken before the
// server binds it (the load generator's own connections use ephemeral
// ports): then it tries again with new ones, up to three times.
func startServer(impl, door string, logPath string) (*serverProc, error) {
	for attempt := 1; ; attempt++ {
		p, err := startServerOnce(impl, door, logPath)
		if err == nil || attempt == 3 {
			return p, err
		}
		if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), "address already in use") {
			return nil, err
		}
	}
}

func startServerOnce(impl, door string, logPath string) (*serverProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"-addr", addr}
	statsAddr := addr // the baseline serves its figures on its only port
	if impl == "realtime" {
		// Ours serves /debug/stats (and pprof) on its admin listener only.
		if statsAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		args = append(args, "-admin-addr", statsAddr)
		args = append(args, serverArgs...)
		if os.Getenv("LOADTEST_PPROF") != "" {
			args = append(args, "-pprof")
		}
	}
	wsURL := "ws://" + addr + "/ws"
	if door == "raw" {
		raw, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "-raw-addr", raw)
		wsURL = "ws://" + raw + "/ws"
	}
	bin, err := serverBinary(impl)
	if err != nil {
		return nil, err
	}
	cmd, err := startLogged(bin, args, logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s server: %w", impl, err)
	}
	p := &serverProc{impl: impl, cmd: cmd, httpURL: "http://" + statsAddr, wsURL: wsURL}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.httpURL + "/healthz"); err == nil {
			resp.Body.Close()
			return p, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s server did not become healthy (log: %s)", impl, logPath)
}

// stop sends SIGTERM and waits up to 15 s, then kills. Only our own child.
func (p *serverProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// rss returns the process's resident set size in bytes (VmRSS).
// processID returns the server's PID, or 0 when unknown (external, no -server-pid).
func (p *serverProc) processID() int {
	if p.cmd != nil {
		return p.cmd.Process.Pid
	}
	return p.pid
}

func (p *serverProc) rss() (int64, error) {
	if p.processID() == 0 {
		return 0, fmt.Errorf("server process unknown")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.processID()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", p.processID())
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTick = 100

// cpu returns the process's user+system CPU time.
func (p *serverProc) cpu() (time.Duration, error) {
	if p.processID() == 0 {
		return 0, fmt.Errorf("server process unknown")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.processID()))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", p.processID())
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// selfCPU returns the CPU time (user and system) the load generator used so
// far, or 0 where it cannot tell.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverStats is the JSON a server's /debug/stats answers (the realtime and
// baseline binaries serve it from cmd/internal/debugstats): the load test
// reads it from any server that has it.
type serverStats struct {
	Goroutines  int    `json:"goroutines"`
	HeapInuse   uint64 `json:"heap_inuse"`
	HeapObjects uint64 `json:"heap_objects"`
	Sys         uint64 `json:"sys"`
	Connections int    `json:"connections"`
}

// stats reads /debug/stats; gc first collects and returns memory to the OS.
func (p *serverProc) stats(gc bool) (serverStats, error) {
	if p.httpURL == "" {
		return serverStats{}, fmt.Errorf("no stats endpoint")
	}
	url := p.httpURL + "/debug/stats"
	if gc {
		url += "?gc=1"
	}
	var s serverStats
	resp, err := http.Get(url)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// ready reports whether the server answers /readyz with 200.
func (p *serverProc) ready() bool {
	resp, err := http.Get(p.httpURL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// closeCounters returns the server's counters of connections it closed, from
// /metrics (ours only).
func (p *serverProc) closeCounters() string {
	if p.httpURL == "" {
		return "unknown"
	}
	resp, err := http.Get(p.httpURL + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, name := range []string{"realtime_slow_consumer_disconnects_total", "realtime_ping_timeouts_total",
			"realtime_protocol_errors_total", "realtime_deliveries_dropped_total", "realtime_connections "} {
			if strings.HasPrefix(sc.Text(), name) {
				out = append(out, sc.Text())
			}
		}
	}
	return strings.Join(out, ", ")
}

// startLogged starts bin with args, its output going to the file logPath.
// The child keeps its own descriptor of the file; ours is closed.
func startLogged(bin string, args []string, logPath string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	return cmd, cmd.Start()
}
