package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metric describes one exported metric. It is a plain value.
type Metric struct {
	// Name is the full name (realtime_…); Type "counter", "gauge" or
	// "histogram"; Labels the label names, if any.
	Name, Type, Help string
	Labels           []string
}

// metric is a Metric with its descriptor.
type metric struct {
	Metric
	desc *prometheus.Desc
}

func newMetric(typ, name, help string, labels ...string) metric {
	full := "realtime_" + name
	return metric{Metric{Name: full, Type: typ, Help: help, Labels: labels}, prometheus.NewDesc(full, help, labels, nil)}
}

var (
	// The hub.
	connections = newMetric("gauge", "connections", "Connections registered with the hub.")
	rooms       = newMetric("gauge", "rooms", "Rooms with at least one member on this pod.")
	deliveries  = newMetric("counter", "deliveries_total", "Messages queued to connections (broadcasts and direct).")
	drops       = newMetric("counter", "deliveries_dropped_total", "Broadcast deliveries a connection refused (closed or queue full).")
	broadcasts  = newMetric("counter", "broadcasts_total", "Broadcasts that reached at least one connection.")
	fanout      = newMetric("histogram", "fanout_seconds", "Time to hand one broadcast to every recipient's queue.")

	// The handler.
	users          = newMetric("gauge", "users", "Distinct users with a connection on this pod.")
	messagesIn     = newMetric("counter", "messages_in_total", "Text messages received from clients.")
	framesOut      = newMetric("counter", "frames_out_total", "WebSocket frames written to clients.")
	writes         = newMetric("counter", "socket_writes_total", "Socket writes that carried frames to clients (frames_out_total / socket_writes_total: frames per write).")
	bytesIn        = newMetric("counter", "bytes_in_total", "Socket bytes read after the handshake.")
	bytesOut       = newMetric("counter", "bytes_out_total", "Socket bytes written after the handshake.")
	slowConsumers  = newMetric("counter", "slow_consumer_disconnects_total", "Connections closed because their send queue filled.")
	timeouts       = newMetric("counter", "ping_timeouts_total", "Connections closed for silence.")
	protocolErrors = newMetric("counter", "protocol_errors_total", "Connections closed for breaking RFC 6455 or the size limit.")
	accepted       = newMetric("counter", "upgrades_total", "WebSocket upgrades that succeeded.")
	rejected       = newMetric("counter", "upgrades_rejected_total", "Upgrades refused, by HTTP status (400 bad handshake, 401 authentication, 403 origin, 431 headers too large, 503 shutting down or over the accept rate).", "status")
	throttled      = newMetric("counter", "upgrades_throttled_total", "Upgrades turned away by admission control (503 + Retry-After, or 1013 to a browser).")
	closed         = newMetric("counter", "connections_closed_total", "Connections that ended.")
	closes         = newMetric("counter", "closes_total", "Connections that ended, by the close code the server sent (empty when the client closed first or nobody did) and reason (gone, client, normal, shutdown, ping_timeout, protocol_error, unsupported_data, invalid_payload, rate_limit, slow_consumer, policy, too_big, internal_error, token_expired, disconnected, other).", "code", "reason")
	errorsSent     = newMetric("counter", "errors_sent_total", "Error messages sent to clients.")
	errorsByCode   = newMetric("counter", "errors_sent_by_code_total", "Error messages sent to clients, by code (bad_json, forbidden, rate_limited, publish_failed, …).", "code")
	commands       = newMetric("counter", "commands_total", "Client messages handled, by what they asked (publish, direct, join, leave, presence, members, refresh, ping, invalid).", "type")
	publishFailed  = newMetric("counter", "publish_failed_total", "Client messages the Broadcaster could not publish (the sender got publish_failed).")
	recoveries     = newMetric("counter", "history_recoveries_total", "Joins with a since position, by result: recovered (every message after it followed) or not_recovered (recovered:false).", "result")
	replayed       = newMetric("counter", "history_replayed_total", "Messages replayed to recovering joiners.")
	historyRooms   = newMetric("gauge", "history_rooms", "Rooms whose history this pod keeps in memory (all rooms on one pod; the rooms it serves with Redis).")
	historyBytes   = newMetric("gauge", "history_bytes", "Bytes of recent messages this pod keeps in memory for recovery.")

	// The Redis broadcaster.
	published          = newMetric("counter", "redis_published_total", "Envelopes published to Redis.")
	publishErrors      = newMetric("counter", "redis_publish_errors_total", "Publishes Redis refused (the sender got an error).")
	received           = newMetric("counter", "redis_received_total", "Envelopes received from Redis (this pod's own included).")
	redisDelivered     = newMetric("counter", "redis_delivered_total", "Envelopes from other pods handed to the hub.")
	redisSkipped       = newMetric("counter", "redis_skipped_total", "Envelopes for a room with no member on this pod (a partition carries many rooms).")
	redisDropped       = newMetric("counter", "redis_dropped_total", "Envelopes dropped because a hand-off queue was full.")
	decodeErrors       = newMetric("counter", "redis_decode_errors_total", "Envelopes from Redis that could not be read.")
	resubscribed       = newMetric("counter", "redis_subscriptions_total", "Subscriptions Redis confirmed, resubscriptions included.")
	partitions         = newMetric("gauge", "redis_partitions", "Partitions this pod listens to.")
	redisReady         = newMetric("gauge", "redis_ready", "1 while a canary through Redis comes back, else 0.")
	linkLag            = newMetric("gauge", "redis_link_lag_seconds", "How long the last canary took from this pod through Redis pub/sub and back.")
	linkAge            = newMetric("gauge", "redis_link_age_seconds", "How long ago the last canary came back (0: none yet); readiness fails past three canary intervals.")
	historySyncs       = newMetric("counter", "history_syncs_total", "Reads of a room's history from Redis after a gap, a resubscription or a first member.")
	historySyncErrors  = newMetric("counter", "history_sync_errors_total", "Reads of a room's history from Redis that failed (retried).")
	gapRepairs         = newMetric("counter", "history_gap_repaired_total", "Messages this pod had missed on pub/sub and delivered from a room's Redis stream, in order.")
	historyHoles       = newMetric("counter", "history_holes_total", "Messages this pod could not get (no longer in Redis): members got a history_gap event.")
	historyRegressions = newMetric("counter", "history_regressions_total", "Times Redis was found behind what this pod delivered (it lost recent writes); each started a new epoch.")
)

var all = []metric{connections, rooms, deliveries, drops, broadcasts, fanout,
	users, messagesIn, framesOut, writes, bytesIn, bytesOut, slowConsumers, timeouts, protocolErrors, accepted,
	rejected, throttled, closed, closes, errorsSent, errorsByCode, commands, publishFailed, recoveries,
	replayed, historyRooms, historyBytes,
	published, publishErrors, received, redisDelivered, redisSkipped, redisDropped, decodeErrors,
	resubscribed, partitions, redisReady, linkLag, linkAge, historySyncs, historySyncErrors, gapRepairs,
	historyHoles, historyRegressions}

// Metrics returns every metric a Collector may export, for documentation
// and for checking dashboards and alert rules against.
func Metrics() []Metric {
	out := make([]Metric, len(all))
	for i, m := range all {
		out[i] = m.Metric
	}
	return out
}
