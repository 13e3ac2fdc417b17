package realtime

import "sync/atomic"

// HubStats are cumulative counters of a hub since it was created.
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
}

type hubCounters struct {
	registered, unregistered, broadcasts, delivered, dropped atomic.Uint64
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
	}
}
