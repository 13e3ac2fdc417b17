package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// fleetResult is what a load-generator process reports at the end.
type fleetResult struct {
	Conns      int      `json:"connections"`
	Deliveries int64    `json:"deliveries"`
	Lost       int64    `json:"lost"`
	Duplicates int64    `json:"duplicates"`
	MaxNs      int64    `json:"max_ns"`
	Latency    []uint64 `json:"latency"`
}

// runFleet is a load-generator process: it opens n connections to url
// (source addresses from index first on), joins room "big", prints
// "ready", then "recv <count>" lines as messages arrive, and on "done" from
// stdin (or stdin closing) prints "result <json>" and exits.
func runFleet(url string, n, first, msgs int) error {
	ctx := context.Background()
	f := fleet{ackMark: []byte(`"type":"join"`)}
	join := []byte(`{"type":"join","room":"big"}`)
	if _, err := f.rampFrom(ctx, url, func(int) []byte { return join }, n, first, 64, func(int) {}); err != nil {
		return err
	}
	defer f.close()
	if !waitUntil(ctx, 120*time.Second, func() bool { return f.acks.Load() >= int64(n) }) {
		return fmt.Errorf("only %d of %d joins acknowledged", f.acks.Load(), n)
	}
	fmt.Println("ready")
	stop := make(chan struct{}) // closed on "done" or when stdin closes
	go func() {
		buf := bufio.NewScanner(os.Stdin)
		for buf.Scan() && buf.Text() != "done" {
		}
		close(stop)
	}()
	for running := true; running; {
		select {
		case <-stop:
			running = false
		case <-time.After(250 * time.Millisecond):
			fmt.Println("recv", f.received.Load())
		}
	}
	r := fleetResult{Conns: n, Deliveries: f.received.Load(), MaxNs: f.maxLat.Load(), Latency: f.hist.merged()}
	for i := range f.perConn {
		switch got := int64(f.perConn[i].Load()); {
		case got < int64(msgs):
			r.Lost += int64(msgs) - got
		case got > int64(msgs):
			r.Duplicates += got - int64(msgs)
		}
	}
	b, _ := json.Marshal(r)
	fmt.Println("result", string(b))
	return nil
}
