package realtime

import "sync/atomic"

// HandlerStats are cumulative counters of a Handler since it was created.
//
// It is a plain value: a copy taken when Stats was called.
type HandlerStats struct {
	// Accepted, Rejected and Closed count upgrades that succeeded, upgrades
	// refused (origin, authentication, bad handshake) and connections ended.
	Accepted, Rejected, Closed uint64
	// MessagesIn counts client text messages; FramesOut frames written;
	// Writes the socket writes that carried them (FramesOut/Writes is how
	// many frames one write carries: more when a window's join events go
	// out together).
	MessagesIn, FramesOut, Writes uint64
	// BytesIn and BytesOut count socket bytes after the handshake.
	BytesIn, BytesOut uint64
	// SlowConsumers counts connections closed because their send queue
	// filled; Timeouts those closed for silence; ProtocolErrors those
	// closed for breaking RFC 6455 or the size limit.
	SlowConsumers, Timeouts, ProtocolErrors uint64
	// Throttled counts upgrades turned away with 503 past AcceptRate.
	Throttled uint64
	// ErrorsSent counts error messages sent to clients; PublishErrors
	// messages the Broadcaster failed to publish.
	ErrorsSent, PublishErrors uint64
	// Recovered and NotRecovered count joins with a since position that
	// got every message after it, or recovered:false; Replayed the messages
	// sent to them.
	Recovered, NotRecovered, Replayed uint64
	// HistoryRooms and HistoryBytes are the rooms whose history the
	// handler keeps in memory (one pod, no Broadcaster) and what their
	// messages take; with a RedisBroadcaster see its Stats.
	HistoryRooms int
	HistoryBytes int64
	// Expired counts connections closed because their credentials expired
	// (CloseUnauthorized); Disconnected those closed by DisconnectUser or
	// the server API (CloseForbidden).
	Expired, Disconnected uint64
	// Users is how many distinct users have a connection on this handler
	// now.
	Users int
	// Counters by label: Closes, connections that ended, by who closed and
	// why (one entry per kind seen); ErrorsByCode, error messages sent, by
	// code; Commands, client messages handled, by what they asked
	// (publish, direct, join, leave, presence, members, refresh, ping,
	// invalid); RejectedByStatus, upgrades refused, by HTTP status ("400",
	// "401", "403", "431", "503").
	Closes           []CloseStat
	ErrorsByCode     map[string]uint64
	Commands         map[string]uint64
	RejectedByStatus map[string]uint64
}

type handlerCounters struct {
	accepted, rejected, closed               atomic.Uint64
	messagesIn, framesOut, bytesIn, bytesOut atomic.Uint64
	writes                                   atomic.Uint64
	slowConsumers, timeouts, protocolErrors  atomic.Uint64
	errorsSent, publishErrors, throttled     atomic.Uint64
	recovered, notRecovered, replayed        atomic.Uint64
	expired, disconnected                    atomic.Uint64
	labels                                   labelCounters
}

// Stats returns the handler's counters.
func (h *Handler) Stats() HandlerStats {
	s := &h.stats
	st := HandlerStats{
		Accepted: s.accepted.Load(), Rejected: s.rejected.Load(), Closed: s.closed.Load(),
		MessagesIn: s.messagesIn.Load(), FramesOut: s.framesOut.Load(), Writes: s.writes.Load(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(),
		SlowConsumers: s.slowConsumers.Load(), Timeouts: s.timeouts.Load(), ProtocolErrors: s.protocolErrors.Load(),
		ErrorsSent: s.errorsSent.Load(), PublishErrors: s.publishErrors.Load(), Throttled: s.throttled.Load(),
		Recovered: s.recovered.Load(), NotRecovered: s.notRecovered.Load(), Replayed: s.replayed.Load(),
		Expired: s.expired.Load(), Disconnected: s.disconnected.Load(),
	}
	st.Users = int(h.users.online.Load())
	s.labels.fill(&st)
	if h.mem != nil {
		hs := h.mem.log.Stats()
		st.HistoryRooms, st.HistoryBytes = hs.Rooms, hs.Bytes
	}
	return st
}

// Turnover returns how many connections the handler has accepted plus how
// many have closed, so far: Accepted + Closed of Stats, read without the
// rest of Stats (cheap enough to poll often, to tell a burst of connects).
// Safe for concurrent use.
func (h *Handler) Turnover() uint64 { return h.stats.accepted.Load() + h.stats.closed.Load() }

// Connections returns how many connections the handler holds now.
func (h *Handler) Connections() int { return int(h.eng.live.Load()) }
