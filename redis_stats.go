package realtime

import "time"

// BroadcasterStats are cumulative counters of a RedisBroadcaster.
//
// It is a plain value: a copy taken when Stats was called.
type BroadcasterStats struct {
	// Published and PublishErrors count envelopes sent to Redis or refused.
	Published, PublishErrors uint64
	// Received counts envelopes taken from Redis (own ones included);
	// Delivered those handed to the hub; Skipped those for a room with no
	// member on this pod (partitions carry many rooms); Dropped those lost
	// because the hand-off queue was full; DecodeErrors those unreadable.
	Received, Delivered, Skipped, Dropped, DecodeErrors uint64
	// Subscriptions counts subscriptions Redis confirmed, including
	// resubscriptions after a reconnect; Partitions is how many partitions
	// the pod listens to now.
	Subscriptions uint64
	Partitions    int
	// History (zero when off): HistoryRooms rooms this pod keeps a log for,
	// HistoryBytes what their recent messages take; HistorySyncs reads of a
	// room from Redis after a gap, a resubscription or a first member
	// (HistorySyncErrors failed ones); HistoryRepaired messages those reads
	// delivered that the pod had missed; HistoryHoles messages it could not
	// get (no longer kept: members got a history_gap event);
	// HistoryDuplicates copies dropped (a pod's own messages come back).
	HistoryRooms                    int
	HistoryBytes                    int64
	HistorySyncs, HistorySyncErrors uint64
	HistoryRepaired, HistoryHoles   uint64
	HistoryDuplicates               uint64
	// HistoryRegressions counts times Redis was found behind what this pod
	// delivered in the same epoch (it lost recent writes); each made the
	// room start a new epoch.
	HistoryRegressions uint64
	// LinkLag is how long the last canary took from this pod through Redis
	// and back; LinkAge how long ago it came back (0: none yet).
	LinkLag, LinkAge time.Duration
}

// Stats returns the broadcaster's counters.
func (b *RedisBroadcaster) Stats() BroadcasterStats {
	s := b.bus.Stats()
	st := BroadcasterStats{
		Published: s.Published, PublishErrors: s.PublishErrors,
		Received: s.Received, Delivered: b.delivered.Load(), Skipped: b.skipped.Load(), Dropped: s.Dropped, DecodeErrors: b.decodeErrors.Load(),
		Subscriptions: s.Subscriptions, Partitions: s.Partitions,
		LinkLag: s.CanaryRTT, LinkAge: s.CanaryAge,
	}
	if x := b.hist; x != nil {
		ls := x.log.Stats()
		st.HistoryRooms, st.HistoryBytes = ls.Rooms, ls.Bytes
		st.HistorySyncs, st.HistorySyncErrors = x.syncs.Load(), x.syncErrors.Load()
		st.HistoryRepaired, st.HistoryHoles, st.HistoryDuplicates = ls.Repaired, ls.Holes, x.duplicates.Load()
		st.HistoryRegressions = x.regressions.Load()
	}
	return st
}
