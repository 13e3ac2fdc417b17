package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"time"
)

// This file is the server side of a distributed run: Redis, the pods, and
// what is measured on them.

// startRedis starts a redis-server on a free port for the pods.
func startRedis(outDir string) (addr string, stop func(), err error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return "", nil, fmt.Errorf("redis-server is needed for several pods: apt-get install -y redis-server")
	}
	addr, err = freeAddr()
	if err != nil {
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", outDir)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not start")
}

// startPods starts `pods` realtime server processes sharing the address
// shared (SO_REUSEPORT), linked through the Redis at redisAddr. The function
// it returns stops them, last started first; on an error, the ones already
// started are stopped before it returns.
func startPods(bin, shared, redisAddr string, pods int, outDir string) ([]*serverProc, func(), error) {
	servers := make([]*serverProc, pods)
	stop := func() {
		for i := len(servers) - 1; i >= 0; i-- {
			if servers[i] != nil {
				servers[i].stop()
			}
		}
	}
	for i := range servers {
		p, err := startPod(bin, shared, redisAddr, podLog(outDir, i))
		if err != nil {
			stop()
			return nil, nil, err
		}
		servers[i] = p
	}
	return servers, stop, nil
}

// startPod starts one pod, logging to logPath. Besides the shared address it
// gets an admin address of its own, so that its figures (/debug/stats,
// /readyz) are its alone.
func startPod(bin, shared, redisAddr, logPath string) (*serverProc, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-addr", shared, "-reuseport", "-admin-addr", admin, "-redis", redisAddr}, serverArgs...)
	cmd, err := startLogged(bin, args, logPath)
	if err != nil {
		return nil, err
	}
	return &serverProc{impl: "realtime", cmd: cmd, httpURL: "http://" + admin}, nil
}

// podLog is the path of pod i's log.
func podLog(outDir string, i int) string {
	return filepath.Join(outDir, fmt.Sprintf("pod%d.log", i))
}

// waitPodsReady waits up to 20 s for each pod to answer /readyz (which
// follows its link to Redis).
func waitPodsReady(ctx context.Context, servers []*serverProc, outDir string) error {
	for i, p := range servers {
		if !waitUntil(ctx, 20*time.Second, func() bool { return p.ready() }) {
			return fmt.Errorf("pod %d not ready (log: %s)", i, podLog(outDir, i))
		}
	}
	return nil
}

// podsRSSAfterGC collects garbage on each pod and reads its RSS: the
// baseline of the per-connection figures.
func podsRSSAfterGC(servers []*serverProc) []int64 {
	rss0 := make([]int64, len(servers))
	for i, p := range servers {
		p.stats(true)
		rss0[i], _ = p.rss()
	}
	return rss0
}

// podFig is one pod's figures.
type podFig struct {
	Conns       int     `json:"connections"`
	RSSPerConn  float64 `json:"rss_bytes_per_conn"`
	RSSGCPerCon float64 `json:"rss_bytes_per_conn_after_gc"`
	CPUPerDeliv float64 `json:"server_cpu_ns_per_delivery"`
	Goroutines  int     `json:"goroutines"`
}

// measurePods reads each idle pod's connections, goroutines and RSS per
// connection over rss0 (before and after a forced GC), and returns them with
// each pod's CPU time so far, from which the fan-out's is counted.
func measurePods(servers []*serverProc, rss0 []int64) ([]podFig, []time.Duration) {
	figs := make([]podFig, len(servers))
	cpu0 := make([]time.Duration, len(servers))
	for i, p := range servers {
		st, _ := p.stats(false)
		rss, _ := p.rss()
		figs[i].Conns, figs[i].Goroutines = st.Connections, st.Goroutines
		figs[i].RSSPerConn = float64(rss-rss0[i]) / float64(max(st.Connections, 1))
		p.stats(true)
		rssGC, _ := p.rss()
		figs[i].RSSGCPerCon = float64(rssGC-rss0[i]) / float64(max(st.Connections, 1))
		cpu0[i], _ = p.cpu()
	}
	return figs, cpu0
}

// podsCPU fills in each pod's CPU per delivery since cpu0 (each of its
// connections gets every one of msgs messages) and returns the pods' CPU
// time in all.
func podsCPU(servers []*serverProc, cpu0 []time.Duration, figs []podFig, msgs int) time.Duration {
	var cpuTotal time.Duration
	for i, p := range servers {
		c1, _ := p.cpu()
		cpuTotal += c1 - cpu0[i]
		figs[i].CPUPerDeliv = float64(c1-cpu0[i]) / float64(max(int64(figs[i].Conns)*int64(msgs), 1))
	}
	return cpuTotal
}
