package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/realtimehub/realtime"
)

// A pod in a process of its own, for the cross-pod latency benchmark: the
// test binary run with RT_BENCH_POD set is pod B (a hub with one member in
// each room, and a Redis broadcaster). It prints "ready" once in step,
// records each member's latencies, and when its stdin closes prints them
// as JSON (sorted, in nanoseconds) and exits.
func TestMain(m *testing.M) {
	if addr := os.Getenv("RT_BENCH_POD"); addr != "" {
		os.Exit(runPodB(addr, os.Getenv("RT_BENCH_ROOMS"), os.Getenv("RT_BENCH_HISTORY") == "on"))
	}
	os.Exit(m.Run())
}

func runPodB(addr, rooms string, keep bool) int {
	var opts []realtime.BroadcasterOption
	if !keep {
		opts = append(opts, realtime.WithHistory(-1, 0))
	}
	got := make(chan time.Duration, 1<<20)
	var b testing.B // startHistoryPod reports failures through it; none are expected
	startHistoryPod(&b, "b", addr, strings.Split(rooms, ","), func(id string) realtime.Connection {
		return &latencyConn{id: id, got: got}
	}, opts...)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	lat := make([]int64, 0, len(got))
	for len(got) > 0 {
		lat = append(lat, int64(<-got))
	}
	slices.Sort(lat)
	json.NewEncoder(os.Stdout).Encode(lat)
	return 0
}

// podB starts pod B as a process; wait closes its stdin and returns the
// latencies it recorded.
func podB(b *testing.B, addr string, rooms []string, keep bool) (wait func() []time.Duration) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	history := "off"
	if keep {
		history = "on"
	}
	cmd.Env = append(os.Environ(), "RT_BENCH_POD="+addr, "RT_BENCH_ROOMS="+strings.Join(rooms, ","), "RT_BENCH_HISTORY="+history)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		b.Fatalf("pod B did not start: %q %v", line, err)
	}
	return func() []time.Duration {
		stdin.Close()
		var ns []int64
		err := json.NewDecoder(out).Decode(&ns)
		cmd.Wait()
		if err != nil {
			b.Fatalf("pod B's latencies: %v", err)
		}
		lat := make([]time.Duration, len(ns))
		for i, n := range ns {
			lat[i] = time.Duration(n)
		}
		return lat
	}
}
