package metrics_test

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/metrics"
)

// A program embedding the library registers the collector with its own
// registry and serves /metrics beside the WebSocket door.
func Example() {
	hub := realtime.NewHub(nil)
	h := realtime.NewHandler(hub, nil, realtime.HandlerConfig{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(metrics.Sources{Hub: hub, Handler: h}))
	mux := http.NewServeMux()
	mux.Handle("/ws", h.Routes())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	fams, _ := reg.Gather()
	for _, f := range fams[:3] {
		fmt.Println(f.GetName())
	}
	// Output:
	// realtime_broadcasts_total
	// realtime_bytes_in_total
	// realtime_bytes_out_total
}
