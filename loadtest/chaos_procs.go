package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file is -chaos's processes: a Redis with an append-only file, so
// that a restart keeps its data, and the pods, each of which can be killed
// and started again with the same flags.

// chaosRedis is a redis-server the run started, restartable on its port
// with its data directory.
type chaosRedis struct {
	addr, dir, outDir string
	cmd               *exec.Cmd
	exited            chan struct{} // closed when cmd has been waited for
	starts            int
}

// start starts redis-server (again) on r.addr with r.dir, and waits up to
// 15 s until it answers PING (a Redis loading its AOF answers LOADING).
func (r *chaosRedis) start() error {
	_, port, _ := net.SplitHostPort(r.addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", r.dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", "always"}
	logPath := filepath.Join(r.outDir, fmt.Sprintf("chaos-redis.%d.log", r.starts))
	cmd, err := startLogged("redis-server", args, logPath)
	if err != nil {
		return fmt.Errorf("redis-server (apt-get install -y redis-server): %w", err)
	}
	r.starts++
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(cmd, r.exited)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if reply, err := redisCommand(r.addr, "PING"); err == nil && reply == "+PONG" {
			return nil
		}
	}
	return fmt.Errorf("redis-server did not answer PING (log: %s)", logPath)
}

// shutdown stops Redis the way that keeps its data (SHUTDOWN, which
// flushes the AOF), and waits up to 10 s for it to exit; then SIGTERM, 5 s;
// then SIGKILL.
func (r *chaosRedis) shutdown() error {
	if r.cmd == nil {
		return nil
	}
	redisCommand(r.addr, "SHUTDOWN") // the connection closes without a reply
	var err error
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 {
			err = fmt.Errorf("redis-server needed %v to stop", sig)
			r.cmd.Process.Signal(sig)
		}
		select {
		case <-r.exited:
			r.cmd = nil
			return err
		case <-time.After(10 * time.Second):
		}
	}
	return fmt.Errorf("redis-server (pid %d) did not exit", r.cmd.Process.Pid)
}

// redisCommand sends one command to the Redis at addr over a fresh
// connection and returns the first line of its reply ("+OK", ":3", "-ERR …").
func redisCommand(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// killPubsub runs CLIENT KILL TYPE pubsub and returns how many were killed.
func killPubsub(addr string) (int, error) {
	reply, err := redisCommand(addr, "CLIENT", "KILL", "TYPE", "pubsub")
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(reply, ":") {
		return 0, fmt.Errorf("CLIENT KILL: %s", reply)
	}
	return strconv.Atoi(reply[1:])
}

// chaosPod is one realtime server process, restartable with the same
// flags: the shared port (SO_REUSEPORT), its admin port and its pod ID.
type chaosPod struct {
	idx                int
	bin, shared, admin string
	redisAddr, outDir  string
	proc               *serverProc
	starts             int
}

// start starts the pod (again) and waits up to 20 s for /readyz, which
// follows its link to Redis. The pods run the server's defaults (rate
// limit, room limit, history): each client is in one room and each
// publisher sends a few messages a second, within them.
func (p *chaosPod) start(ctx context.Context) error {
	args := []string{"-addr", p.shared, "-reuseport", "-admin-addr", p.admin, "-redis", p.redisAddr,
		"-insecure-dev-auth", "-pod-id", fmt.Sprintf("pod%d", p.idx)}
	logPath := filepath.Join(p.outDir, fmt.Sprintf("chaos-pod%d.%d.log", p.idx, p.starts))
	cmd, err := startLogged(p.bin, args, logPath)
	if err != nil {
		return err
	}
	p.starts++
	p.proc = &serverProc{impl: "realtime", cmd: cmd, httpURL: "http://" + p.admin}
	if !waitUntil(ctx, 20*time.Second, p.proc.ready) {
		return fmt.Errorf("pod%d not ready (log: %s)", p.idx, logPath)
	}
	return nil
}

// kill sends SIGKILL to the pod (our child, by PID) and waits for it.
func (p *chaosPod) kill() {
	if p.proc == nil {
		return
	}
	p.proc.cmd.Process.Kill()
	p.proc.cmd.Wait()
	p.proc = nil
}

// stop stops the pod with SIGTERM (SIGKILL after 15 s).
func (p *chaosPod) stop() {
	if p.proc != nil {
		p.proc.stop()
		p.proc = nil
	}
}
