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
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connections, rooms, messagesIn, framesOut, deliveries, drops, slowConsumers,
		timeouts, protocolErrors, accepted, rejected, fanout, published, publishErrors, received, redisDropped, resubscribed, redisReady} {
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
	}
}
