// Package redistest starts real redis-server processes on free loopback
// ports for tests: a single server that can be killed and restarted on the
// same port, and a Redis Cluster of several masters. It never skips: if
// redis-server is missing the test fails with the command that installs it.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

const installHint = "redis-server is not installed: run `apt-get install -y redis-server` (make test does it when run as root)"

// Server is one redis-server process.
//
// Concurrency: its methods are for the test goroutine; do not call them at
// once.
type Server struct {
	Addr string
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
	t    testing.TB
}

// freePort returns a loopback port that was free a moment ago; with bus,
// one whose cluster bus port (10000 above) was free too.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !bus {
			ln.Close()
			return port
		}
		if port+10000 <= 65535 {
			if busLn, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
				busLn.Close()
				ln.Close()
				return port
			}
		}
		ln.Close()
	}
	t.Fatal("free port: no port with a free cluster bus port")
	return 0
}

// Start starts a redis-server on a free port; it is killed when the test ends.
// A port taken by another process between finding it free and binding it
// (or, in cluster mode, its bus port, 10000 above) is not a failure: the
// server is started again on another port, up to a few times.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal(installHint)
	}
	var err error
	for range startAttempts {
		port := freePort(t, slices.Contains(extra, "--cluster-enabled"))
		s := &Server{
			Addr: "127.0.0.1:" + strconv.Itoa(port), port: port, dir: t.TempDir(), t: t,
			args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, extra...),
		}
		if err = s.start(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		s.Kill()
	}
	t.Fatal(err)
	return nil
}

// startAttempts is how many ports Start tries.
const startAttempts = 4

// start runs the server and waits until it answers PING; it fails if the
// process exits first (its port was taken) or after 20 s.
func (s *Server) start() error {
	s.cmd = exec.Command("redis-server", append(s.args, "--dir", s.dir)...)
	dieWithParent(s.cmd)
	logf, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if exited(s.cmd.Process.Pid) {
			return fmt.Errorf("redis-server on %s exited at start (log in %s)", s.Addr, s.dir)
		}
		if ping(s.Addr) {
			return nil
		}
	}
	return fmt.Errorf("redis-server on %s did not answer PING in 20 s (log in %s)", s.Addr, s.dir)
}

// exited reports whether process pid has ended (a zombie not yet waited
// for, or gone), without waiting for it: a goroutine blocked in Wait would
// outlive the start and show as a leak in the tests that count goroutines.
// Where /proc cannot tell, it reports false (start then waits for PING).
func exited(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		_, noProc := os.Stat("/proc/self/stat")
		return noProc == nil && errors.Is(err, fs.ErrNotExist) // gone, where /proc works
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// ping reports whether addr answers a PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.Write([]byte("PING\r\n"))
	buf := make([]byte, 16)
	c.SetReadDeadline(time.Now().Add(time.Second))
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop freezes the server (SIGSTOP): connections stay open and nothing is
// answered, as with a Redis stalled by a long command or a paused VM.
func (s *Server) Stop() { s.signal(syscall.SIGSTOP) }

// Continue resumes a server frozen by Stop (SIGCONT).
func (s *Server) Continue() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Client returns a rueidis client for addrs, closed when the test ends.
// Retries are on so that the client rides out a restart.
func Client(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      addrs,
		DisableCache:     true,
		Dialer:           net.Dialer{Timeout: time.Second},
		ConnWriteTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatalf("redis client for %v: %v", addrs, err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartCluster starts n masters with cluster mode on and joins them with
// redis-cli --cluster create. It returns their addresses.
func StartCluster(t testing.TB, n int) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal(installHint)
	}
	var addrs []string
	for range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf")
		addrs = append(addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Wait until every node agrees that the cluster is up.
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for deadline := time.Now().Add(20 * time.Second); ; {
			out, _ := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok: %s", a, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return addrs
}
