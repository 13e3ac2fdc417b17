package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// recoveryResult is what -storm -storm-missed measures.
type recoveryResult struct {
	Missed       int     `json:"missed_per_room"`
	Recovered    int64   `json:"recovered"`      // acknowledged recovered:true
	NotRecovered int64   `json:"not_recovered"`  // recovered:false
	Wrong        int64   `json:"wrong"`          // recovered, but a message lost, repeated or out of order
	Failed       int64   `json:"failed"`         // never came back or never current within a minute
	CurrentMs    float64 `json:"all_current_ms"` // from the start of the reconnects until the last one had every missed message
	PeakRSS      int64   `json:"peak_rss_bytes"`
}

// roomPos is a room's position as a join acknowledgement tells it.
type roomPos struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// inMsg is what a recovering connection reads of each message.
type inMsg struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
	Data   struct {
		roomPos
		Recovered *bool `json:"recovered"`
	} `json:"data"`
}

// recoverStorm runs after every connection was dropped: it publishes
// -storm-missed messages to each room (one publisher per room, which waits
// for its last message to come back, so all are placed), then brings every
// connection back at once as realtime.js does, rejoining with the room's
// position from before, and checks what each receives.
func (t *targetRun) recoverStorm(ctx context.Context, rooms int) *recoveryResult {
	res := &recoveryResult{Missed: t.cfg.stormMissed}
	before, err := t.publishMissed(ctx, rooms, t.cfg.stormMissed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm-missed:", err)
		res.Failed = int64(t.cfg.conns)
		return res
	}
	fmt.Fprintf(os.Stderr, "%s: storm: %d messages published to each of %d rooms while away; reconnecting %d\n", t.target, t.cfg.stormMissed, rooms, t.cfg.conns)
	var current atomic.Int64
	conns := make([]wsClient, t.cfg.conns)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range t.cfg.conns {
		wg.Go(func() {
			room := roomOf(i, rooms)
			c, ok := t.recoverOne(ctx, i, room, before[room], res)
			conns[i] = c
			if ok {
				current.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t.sampleRecovery(ctx, res, start, &current, done)
	<-done
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	fmt.Fprintf(os.Stderr, "%s: storm: %d recovered, %d not, %d wrong, %d failed; all current in %.0f ms; peak RSS %d MiB\n",
		t.target, res.Recovered, res.NotRecovered, res.Wrong, res.Failed, res.CurrentMs, res.PeakRSS>>20)
	return res
}

// sampleRecovery records the peak RSS every 100 ms until done, and when the
// last connection became current.
func (t *targetRun) sampleRecovery(ctx context.Context, res *recoveryResult, start time.Time, current *atomic.Int64, done <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if rss, err := t.p.rss(); err == nil {
			res.PeakRSS = max(res.PeakRSS, rss)
		}
		select {
		case <-done:
			res.CurrentMs = ms(time.Since(start))
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publishMissed returns each room's position, then publishes n messages to
// it and waits until the publisher got the last one back.
func (t *targetRun) publishMissed(ctx context.Context, rooms, n int) (map[string]roomPos, error) {
	pos := make(map[string]roomPos, rooms)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, rooms)
	for r := range rooms {
		wg.Go(func() {
			room := roomOf(r, rooms)
			p, err := publishRoom(ctx, t.p.wsURL, r, room, n)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", room, err)
				return
			}
			mu.Lock()
			pos[room] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	return pos, <-errs
}

// publishRoom joins room, notes its position, sends n chat messages, and
// reads until the last of them came back.
func publishRoom(ctx context.Context, url string, r int, room string, n int) (roomPos, error) {
	c, err := dialRetry(ctx, r, url)
	if err != nil {
		return roomPos{}, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := c.WriteText(helloFrame(room)); err != nil {
		return roomPos{}, err
	}
	var before roomPos
	for before.Epoch == "" {
		var m inMsg
		if err := readJSON(c, &m); err != nil {
			return roomPos{}, fmt.Errorf("no join acknowledgement: %w", err)
		}
		if m.Type == "join" && m.Room == room && m.Data.Epoch != "" {
			before = m.Data.roomPos
		}
	}
	for i := range n {
		if err := publish(c, i, room); err != nil {
			return roomPos{}, err
		}
	}
	for {
		var m inMsg
		if err := readJSON(c, &m); err != nil {
			return roomPos{}, fmt.Errorf("own messages did not come back: %w", err)
		}
		if m.Type == "chat" && m.Offset >= before.Offset+uint64(n) {
			return before, nil
		}
	}
}

// recoverOne brings connection i back, rejoins room from since, and reads
// until it has every message after since that was published while it was
// away; it reports whether it did, counting the outcome in res.
func (t *targetRun) recoverOne(ctx context.Context, i int, room string, since roomPos, res *recoveryResult) (wsClient, bool) {
	c, _, err := reconnect(ctx, i, t.p.wsURL)
	if err != nil {
		atomic.AddInt64(&res.Failed, 1)
		return nil, false
	}
	join, _ := json.Marshal(map[string]any{"type": "join", "room": room, "data": map[string]any{"since": since}})
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if c.WriteText(join) != nil {
		atomic.AddInt64(&res.Failed, 1)
		return c, false
	}
	next, last := since.Offset+1, since.Offset+uint64(t.cfg.stormMissed)
	acked := false
	for next <= last {
		var m inMsg
		if readJSON(c, &m) != nil {
			atomic.AddInt64(&res.Failed, 1)
			return c, false
		}
		switch {
		case !acked && m.Type == "join" && m.Data.Recovered != nil:
			acked = true
			if !*m.Data.Recovered {
				atomic.AddInt64(&res.NotRecovered, 1)
				return c, false
			}
			atomic.AddInt64(&res.Recovered, 1)
		case acked && m.Type == "chat" && m.Room == room:
			if m.Offset != next || m.Epoch != since.Epoch {
				atomic.AddInt64(&res.Wrong, 1)
				return c, false
			}
			next++
		}
	}
	return c, true
}
