package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a load-generator process (runFleet) seen from the parent.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// loadProcs is the load-generator processes of a distributed run: it starts
// them, follows what they print, and tells them when to report. One process
// holds at most ~19,900 sockets, so big runs need several.
type loadProcs struct {
	children []*child
	started  time.Time // when the first one started: the ramp's start
	readyCh  chan int  // the index of each process that printed "ready"
	wg       sync.WaitGroup

	mu      sync.Mutex
	recv    []int64        // each one's last "recv" count
	results []*fleetResult // each one's "result", once it reported
}

// start starts procs processes of this executable (self) that split n
// connections to url between them, each expecting msgs messages. Source
// addresses are picked from index 1 on: the publisher dialed from index 0;
// sources is -source-ips and client -client, passed on.
func (l *loadProcs) start(self, url, sources, client string, procs, n, msgs int) error {
	l.recv = make([]int64, procs)
	l.results = make([]*fleetResult, procs)
	l.readyCh = make(chan int, procs)
	per := (n + procs - 1) / procs
	l.started = time.Now()
	for i := range procs {
		k := min(per, n-i*per)
		args := []string{"-fleet", "-url", url, "-conns", strconv.Itoa(k), "-fleet-first", strconv.Itoa(1 + i*per), "-msgs", strconv.Itoa(msgs), "-client", client}
		if sources != "" {
			args = append(args, "-source-ips", sources)
		}
		cmd := exec.Command(self, args...)
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
		l.children = append(l.children, c)
	}
	return nil
}

// follow reads what each process prints: "ready", "recv <count>" and
// "result <json>", until its output ends.
func (l *loadProcs) follow() {
	for i, c := range l.children {
		l.wg.Go(func() {
			for line := range c.lines {
				switch {
				case line == "ready":
					l.readyCh <- i
				case strings.HasPrefix(line, "recv "):
					v, _ := strconv.ParseInt(strings.TrimPrefix(line, "recv "), 10, 64)
					l.mu.Lock()
					l.recv[i] = v
					l.mu.Unlock()
				case strings.HasPrefix(line, "result "):
					var r fleetResult
					if json.Unmarshal([]byte(strings.TrimPrefix(line, "result ")), &r) == nil {
						l.mu.Lock()
						l.results[i] = &r
						l.mu.Unlock()
					}
				}
			}
		})
	}
}

// waitReady waits until every process has its connections joined, with a
// live count; it gives up when 180 s pass without one more getting ready.
func (l *loadProcs) waitReady() error {
	procs := len(l.children)
	for readyCount := 0; readyCount < procs; {
		select {
		case <-l.readyCh:
			readyCount++
			fmt.Fprintf(os.Stderr, "\r%d/%d load processes ready (%.0fs)", readyCount, procs, time.Since(l.started).Seconds())
		case <-time.After(180 * time.Second):
			return fmt.Errorf("load processes not ready after 180 s")
		}
	}
	return nil
}

// total is the messages received, as the processes last counted them.
func (l *loadProcs) total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s int64
	for _, v := range l.recv {
		s += v
	}
	return s
}

// finish tells every process to report, and waits until all their output
// is read.
func (l *loadProcs) finish() {
	for _, c := range l.children {
		fmt.Fprintln(c.stdin, "done")
		c.stdin.Close()
	}
	l.wg.Wait()
}

// aggregate sums the processes' results (latency histograms merged, the
// maximum of maxima); a process that reported nothing is an error.
func (l *loadProcs) aggregate() (fleetResult, error) {
	agg := fleetResult{Latency: make([]uint64, histBuckets)}
	for i, r := range l.results {
		if r == nil {
			return agg, fmt.Errorf("load process %d reported no result", i)
		}
		agg.Conns += r.Conns
		agg.Deliveries += r.Deliveries
		agg.Lost += r.Lost
		agg.Duplicates += r.Duplicates
		agg.MaxNs = max(agg.MaxNs, r.MaxNs)
		for b, v := range r.Latency {
			agg.Latency[b] += v
		}
	}
	return agg, nil
}

// stop ends the processes started, last started first, and reaps them.
func (l *loadProcs) stop() {
	for i := len(l.children) - 1; i >= 0; i-- {
		cmd := l.children[i].cmd
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}
