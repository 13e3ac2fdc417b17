package main

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// Fault kinds -chaos injects, in the order of its round robin.
const (
	faultPodKill      = "pod-kill"      // SIGKILL a pod, start it again -chaos-down later
	faultPubsubKill   = "pubsub-kill"   // CLIENT KILL TYPE pubsub on Redis
	faultRedisRestart = "redis-restart" // SHUTDOWN Redis (AOF kept), start it again -chaos-down later
	faultClientDrop   = "client-drop"   // close a fraction of the client sockets, no close frame
)

var allFaultKinds = []string{faultPodKill, faultPubsubKill, faultRedisRestart, faultClientDrop}

// chaosConfig is -chaos's part of the command line. Its sizes are flags of
// their own (-chaos-conns, not -conns) so that its defaults hold whatever
// the other modes' are.
type chaosConfig struct {
	on            bool
	conns         int
	rooms         int
	pods          int
	rate          float64
	duration      time.Duration
	warmup        time.Duration
	tail          time.Duration
	down          time.Duration
	faultsPerKind int
	kinds         string
	dropFrac      float64
	maxBad        int64
}

// register declares the -chaos flags.
func (c *chaosConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.on, "chaos", false, "chaos mode: clients in many rooms across pods behind Redis (AOF), while pods are killed, Redis restarted, its pub/sub clients killed and client sockets dropped; checks every client got every offset exactly once, in order (writes chaos.json)")
	fs.IntVar(&c.conns, "chaos-conns", 5000, "with -chaos: client connections (besides one publisher per room)")
	fs.IntVar(&c.rooms, "chaos-rooms", 50, "with -chaos: rooms chaos-0 … chaos-N-1, clients spread evenly")
	fs.IntVar(&c.pods, "chaos-pods", 2, "with -chaos: server processes sharing one port (SO_REUSEPORT)")
	fs.Float64Var(&c.rate, "chaos-rate", 300, "with -chaos: messages per second over all rooms")
	fs.DurationVar(&c.duration, "chaos-duration", 60*time.Second, "with -chaos: how long faults are injected")
	fs.DurationVar(&c.warmup, "chaos-warmup", 3*time.Second, "with -chaos: publishing before the first fault")
	fs.DurationVar(&c.tail, "chaos-tail", 5*time.Second, "with -chaos: publishing after the last fault")
	fs.DurationVar(&c.down, "chaos-down", time.Second, "with -chaos: how long a killed pod or a stopped Redis stays down")
	fs.IntVar(&c.faultsPerKind, "chaos-faults", 6, "with -chaos: faults of each kind, spread evenly over -chaos-duration")
	fs.StringVar(&c.kinds, "chaos-kinds", strings.Join(allFaultKinds, ","), "with -chaos: fault kinds, injected in turn")
	fs.Float64Var(&c.dropFrac, "chaos-drop", 0.1, "with -chaos: fraction of the connections a client-drop closes")
	fs.Int64Var(&c.maxBad, "chaos-max-lost", 0, "with -chaos: exit 1 when lost + duplicated + out of order + the other integrity failures exceed this")
}

// faultKinds returns the -chaos-kinds list, checked.
func (c *chaosConfig) faultKinds() ([]string, error) {
	var kinds []string
	for _, k := range strings.Split(c.kinds, ",") {
		k = strings.TrimSpace(k)
		switch k {
		case faultPodKill, faultPubsubKill, faultRedisRestart, faultClientDrop:
			kinds = append(kinds, k)
		case "":
		default:
			return nil, fmt.Errorf("-chaos-kinds: unknown fault %q (known: %s)", k, strings.Join(allFaultKinds, ", "))
		}
	}
	return kinds, nil
}

// check rejects sizes the run cannot work with.
func (c *chaosConfig) check() error {
	switch {
	case c.conns < 1 || c.rooms < 1 || c.pods < 1:
		return fmt.Errorf("-chaos-conns, -chaos-rooms and -chaos-pods must be at least 1")
	case c.conns+c.rooms > 19000:
		return fmt.Errorf("-chaos-conns: one process holds at most ~19,000 sockets here")
	case c.rate <= 0:
		return fmt.Errorf("-chaos-rate must be positive")
	case c.dropFrac < 0 || c.dropFrac > 1:
		return fmt.Errorf("-chaos-drop must be within [0, 1]")
	}
	return nil
}
