package realtime

import "sync/atomic"

// HubStats are cumulative counters of a hub since it was created.
//
// It is a plain value: a copy taken when Stats was called.
type HubStats struct {
	// Registered and Unregistered count connections added and removed.
	Registered, Unregistered uint64
	// Broadcasts counts broadcasts that reached at least one connection's
	// queue attempt (broadcasts to empty rooms are not counted).
	Broadcasts uint64
	// Delivered counts messages queued to connections (broadcasts and SendTo).
	Delivered uint64
	// Dropped counts broadcast deliveries a connection refused (closed, or
	// queue full).
	Dropped uint64
	// FanoutSeconds counts broadcasts by how long handing the message to
	// every recipient's queue took: FanoutSeconds[i] broadcasts took at most
	// FanoutBuckets[i] seconds (and more than the bucket before); the last
	// counts the rest.
	FanoutSeconds [len(FanoutBuckets) + 1]uint64
	// FanoutSecondsSum is the total time of those broadcasts, in seconds.
	FanoutSecondsSum float64
}

// FanoutBuckets are the upper bounds, in seconds, of HubStats.FanoutSeconds.
var FanoutBuckets = [...]float64{1e-6, 4e-6, 16e-6, 64e-6, 256e-6, 1e-3, 4e-3, 16e-3, 64e-3, 256e-3, 1}

type hubCounters struct {
	registered, unregistered, broadcasts, delivered, dropped atomic.Uint64
	fanout                                                   [len(FanoutBuckets) + 1]atomic.Uint64
	fanoutNanos                                              atomic.Uint64
}

func (c *hubCounters) observeFanout(seconds float64) {
	i := 0
	for i < len(FanoutBuckets) && seconds > FanoutBuckets[i] {
		i++
	}
	c.fanout[i].Add(1)
	c.fanoutNanos.Add(uint64(seconds * 1e9))
}

// Stats returns the hub's counters. Each is read atomically; together they
// are not one snapshot.
func (h *ShardedHub) Stats() HubStats {
	return HubStats{
		Registered:   h.stats.registered.Load(),
		Unregistered: h.stats.unregistered.Load(),
		Broadcasts:   h.stats.broadcasts.Load(),
		Delivered:    h.stats.delivered.Load(),
		Dropped:      h.stats.dropped.Load(),
		FanoutSeconds: func() (out [len(FanoutBuckets) + 1]uint64) {
			for i := range out {
				out[i] = h.stats.fanout[i].Load()
			}
			return out
		}(),
		FanoutSecondsSum: float64(h.stats.fanoutNanos.Load()) / 1e9,
	}
}
