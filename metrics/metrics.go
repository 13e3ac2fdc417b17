// Package metrics exports the realtime library's counters to Prometheus.
// The library only keeps counters (Stats methods); this collector reads them
// at each scrape, so the hot paths pay for no metrics library.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/realtimehub/realtime"
)

// Collector reads a hub, a handler and, if not nil, a Redis broadcaster.
type Collector struct {
	hub     *realtime.ShardedHub
	handler *realtime.Handler
	rb      *realtime.RedisBroadcaster
}

// New returns a Collector; register it with a prometheus.Registry.
func New(hub *realtime.ShardedHub, handler *realtime.Handler, rb *realtime.RedisBroadcaster) *Collector {
	return &Collector{hub: hub, handler: handler, rb: rb}
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("realtime_"+name, help, nil, nil)
}

var (
	connections    = desc("connections", "Connections registered with the hub.")
	rooms          = desc("rooms", "Rooms with at least one member on this pod.")
	messagesIn     = desc("messages_in_total", "Text messages received from clients.")
	framesOut      = desc("frames_out_total", "WebSocket frames written to clients.")
	deliveries     = desc("deliveries_total", "Messages queued to connections (broadcasts and direct).")
	drops          = desc("deliveries_dropped_total", "Broadcast deliveries a connection refused (closed or queue full).")
	slowConsumers  = desc("slow_consumer_disconnects_total", "Connections closed because their send queue filled.")
	timeouts       = desc("ping_timeouts_total", "Connections closed for silence.")
	protocolErrors = desc("protocol_errors_total", "Connections closed for breaking RFC 6455 or the size limit.")
	accepted       = desc("upgrades_total", "WebSocket upgrades that succeeded.")
	rejected       = desc("upgrades_rejected_total", "Upgrades refused (origin, authentication, bad handshake).")
	fanout         = desc("fanout_seconds", "Time to hand one broadcast to every recipient's queue.")
	published      = desc("redis_published_total", "Envelopes published to Redis.")
	publishErrors  = desc("redis_publish_errors_total", "Publishes Redis refused (the sender got an error).")
	received       = desc("redis_received_total", "Envelopes received from Redis.")
	redisDropped   = desc("redis_dropped_total", "Envelopes dropped because a hand-off queue was full.")
	resubscribed   = desc("redis_subscriptions_total", "Subscriptions Redis confirmed, resubscriptions included.")
	redisReady     = desc("redis_ready", "1 while a canary through Redis comes back, else 0.")
	recoveries     = prometheus.NewDesc("realtime_history_recoveries_total", "Joins with a since position, by result: recovered (every message after it followed) or not_recovered (recovered:false).", []string{"result"}, nil)
	replayed       = desc("history_replayed_total", "Messages replayed to recovering joiners.")
	historyRooms   = desc("history_rooms", "Rooms whose history this pod keeps in memory (all rooms on one pod; the rooms it serves with Redis).")
	historyBytes   = desc("history_bytes", "Bytes of recent messages this pod keeps in memory for recovery.")
	historySyncs   = desc("history_syncs_total", "Reads of a room's history from Redis after a gap, a resubscription or a first member.")
	gapRepairs     = desc("history_gap_repaired_total", "Messages this pod had missed on pub/sub and delivered from a room's Redis stream, in order.")
	historyHoles   = desc("history_holes_total", "Messages this pod could not get (no longer in Redis): members got a history_gap event.")
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connections, rooms, messagesIn, framesOut, deliveries, drops, slowConsumers,
		timeouts, protocolErrors, accepted, rejected, fanout, published, publishErrors, received, redisDropped, resubscribed, redisReady,
		recoveries, replayed, historyRooms, historyBytes, historySyncs, gapRepairs, historyHoles} {
		ch <- d
	}
}

// Collect reads the counters.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	hs := c.hub.Stats()
	gauge(connections, float64(c.hub.ConnectionCount()))
	gauge(rooms, float64(c.hub.NumRooms()))
	counter(deliveries, hs.Delivered)
	counter(drops, hs.Dropped)
	buckets := map[float64]uint64{}
	var count uint64
	for i, n := range hs.FanoutSeconds {
		count += n
		if i < len(realtime.FanoutBuckets) {
			buckets[realtime.FanoutBuckets[i]] = count
		}
	}
	ch <- prometheus.MustNewConstHistogram(fanout, count, 0, buckets) // the sum is not kept
	if c.handler != nil {
		s := c.handler.Stats()
		counter(messagesIn, s.MessagesIn)
		counter(framesOut, s.FramesOut)
		counter(slowConsumers, s.SlowConsumers)
		counter(timeouts, s.Timeouts)
		counter(protocolErrors, s.ProtocolErrors)
		counter(accepted, s.Accepted)
		counter(rejected, s.Rejected)
		ch <- prometheus.MustNewConstMetric(recoveries, prometheus.CounterValue, float64(s.Recovered), "recovered")
		ch <- prometheus.MustNewConstMetric(recoveries, prometheus.CounterValue, float64(s.NotRecovered), "not_recovered")
		counter(replayed, s.Replayed)
		if c.rb == nil {
			gauge(historyRooms, float64(s.HistoryRooms))
			gauge(historyBytes, float64(s.HistoryBytes))
		}
	}
	if c.rb != nil {
		s := c.rb.Stats()
		counter(published, s.Published)
		counter(publishErrors, s.PublishErrors)
		counter(received, s.Received)
		counter(redisDropped, s.Dropped)
		counter(resubscribed, s.Subscriptions)
		ready := 0.0
		if c.rb.Ready() == nil {
			ready = 1
		}
		gauge(redisReady, ready)
		gauge(historyRooms, float64(s.HistoryRooms))
		gauge(historyBytes, float64(s.HistoryBytes))
		counter(historySyncs, s.HistorySyncs)
		counter(gapRepairs, s.HistoryRepaired)
		counter(historyHoles, s.HistoryHoles)
	}
}
