// Package debugstats serves a process's runtime figures as JSON, for the
// load test to read from the servers it measures.
package debugstats

import (
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
)

// Stats is what Handler reports.
type Stats struct {
	Goroutines  int    `json:"goroutines"`
	HeapInuse   uint64 `json:"heap_inuse"`
	HeapObjects uint64 `json:"heap_objects"`
	Sys         uint64 `json:"sys"`
	Connections int    `json:"connections"`
}

// Handler serves Stats at any path. With ?gc=1 it first runs a garbage
// collection and returns freed memory to the OS, so that RSS can be read
// without the garbage a burst of handshakes left behind.
func Handler(connections func() int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			debug.FreeOSMemory()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Stats{
			Goroutines:  runtime.NumGoroutine(),
			HeapInuse:   ms.HeapInuse,
			HeapObjects: ms.HeapObjects,
			Sys:         ms.Sys,
			Connections: connections(),
		})
	})
}
