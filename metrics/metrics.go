// Package metrics exports the realtime library's counters to Prometheus: a
// prometheus.Collector over a ShardedHub, a Handler and, with several pods,
// a RedisBroadcaster. The library keeps only atomic counters (its Stats
// methods); the collector reads them at each scrape, so the hot paths pay
// for no metrics library.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.New(metrics.Sources{Hub: hub, Handler: h, Broadcaster: rb}))
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Every metric is named realtime_…; counters end in _total, durations are in
// seconds, labels are lower case. Metrics lists them all.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/realtimehub/realtime"
)

// Sources are what a Collector reads; a nil field's metrics are left out.
//
// It is a plain value, copied by New.
type Sources struct {
	Hub         *realtime.ShardedHub
	Handler     *realtime.Handler
	Broadcaster *realtime.RedisBroadcaster
}

// Collector is a prometheus.Collector over Sources. All methods may be
// called concurrently (a registry scrapes from several goroutines).
type Collector struct{ src Sources }

// New returns a Collector; register it with a prometheus.Registry.
func New(src Sources) *Collector { return &Collector{src: src} }

var _ prometheus.Collector = (*Collector)(nil)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range all {
		ch <- m.desc
	}
}

// Collect reads the counters of the sources.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	out := emitter{ch}
	if c.src.Hub != nil {
		collectHub(out, c.src.Hub)
	}
	if c.src.Handler != nil {
		collectHandler(out, c.src.Handler, c.src.Broadcaster == nil)
	}
	if c.src.Broadcaster != nil {
		collectBroadcaster(out, c.src.Broadcaster)
	}
}

// emitter sends metrics of the kinds the collector uses.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(m metric, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(m metric, v uint64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(v), labels...)
}

func collectHub(out emitter, hub *realtime.ShardedHub) {
	hs := hub.Stats()
	out.gauge(connections, float64(hub.ConnectionCount()))
	out.gauge(rooms, float64(hub.NumRooms()))
	out.counter(deliveries, hs.Delivered)
	out.counter(drops, hs.Dropped)
	out.counter(broadcasts, hs.Broadcasts)
	buckets := map[float64]uint64{}
	var count uint64
	for i, n := range hs.FanoutSeconds {
		count += n
		if i < len(realtime.FanoutBuckets) {
			buckets[realtime.FanoutBuckets[i]] = count
		}
	}
	out.ch <- prometheus.MustNewConstHistogram(fanout.desc, count, hs.FanoutSecondsSum, buckets)
}

func collectHandler(out emitter, h *realtime.Handler, ownHistory bool) {
	s := h.Stats()
	out.gauge(users, float64(s.Users))
	out.counter(messagesIn, s.MessagesIn)
	out.counter(framesOut, s.FramesOut)
	out.counter(writes, s.Writes)
	out.counter(bytesIn, s.BytesIn)
	out.counter(bytesOut, s.BytesOut)
	out.counter(slowConsumers, s.SlowConsumers)
	out.counter(timeouts, s.Timeouts)
	out.counter(protocolErrors, s.ProtocolErrors)
	out.counter(accepted, s.Accepted)
	out.counter(throttled, s.Throttled)
	out.counter(closed, s.Closed)
	out.counter(errorsSent, s.ErrorsSent)
	out.counter(publishFailed, s.PublishErrors)
	for _, cs := range s.Closes {
		out.counter(closes, cs.Count, cs.Code, cs.Reason)
	}
	for code, n := range s.ErrorsByCode {
		out.counter(errorsByCode, n, code)
	}
	for typ, n := range s.Commands {
		out.counter(commands, n, typ)
	}
	for status, n := range s.RejectedByStatus {
		out.counter(rejected, n, status)
	}
	out.counter(recoveries, s.Recovered, "recovered")
	out.counter(recoveries, s.NotRecovered, "not_recovered")
	out.counter(replayed, s.Replayed)
	if ownHistory {
		out.gauge(historyRooms, float64(s.HistoryRooms))
		out.gauge(historyBytes, float64(s.HistoryBytes))
	}
}

func collectBroadcaster(out emitter, rb *realtime.RedisBroadcaster) {
	s := rb.Stats()
	out.counter(published, s.Published)
	out.counter(publishErrors, s.PublishErrors)
	out.counter(received, s.Received)
	out.counter(redisDelivered, s.Delivered)
	out.counter(redisSkipped, s.Skipped)
	out.counter(redisDropped, s.Dropped)
	out.counter(decodeErrors, s.DecodeErrors)
	out.counter(resubscribed, s.Subscriptions)
	out.gauge(partitions, float64(s.Partitions))
	ready := 0.0
	if rb.Ready() == nil {
		ready = 1
	}
	out.gauge(redisReady, ready)
	out.gauge(linkLag, s.LinkLag.Seconds())
	out.gauge(linkAge, s.LinkAge.Seconds())
	out.gauge(historyRooms, float64(s.HistoryRooms))
	out.gauge(historyBytes, float64(s.HistoryBytes))
	out.counter(historySyncs, s.HistorySyncs)
	out.counter(historySyncErrors, s.HistorySyncErrors)
	out.counter(gapRepairs, s.HistoryRepaired)
	out.counter(historyHoles, s.HistoryHoles)
	out.counter(historyRegressions, s.HistoryRegressions)
}
