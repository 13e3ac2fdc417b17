package server

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// After a reconnect storm the heap holds the garbage of thousands of
// handshakes and the runtime keeps the pages it grew to, though almost all
// that stays is long-lived connection state: the process would hold that
// memory until the scavenger slowly gives it back. As a JVM's periodic
// collection returns an idle heap, the server runs one collection and
// returns the free memory to the OS once a burst has settled.

//
// While a burst lasts the collector may also run less often (burstPolicy's
// gcPercent): the server's GOGC of 25 keeps an idle heap near its live
// size, but during a storm it collected every few hundred handshakes, each
// time marking every connection's state: about a quarter of the server's
// CPU per connect. The heap the storm grows is returned by the release.

// The server's burst policy: a burst starts with burstStart connects or
// closes in one burstTick and has settled after burstQuiet without any; it
// is worth a release once it made burstSize since the last one.
const (
	burstSize  = 1000
	burstStart = 100
	burstTick  = 100 * time.Millisecond
	burstQuiet = time.Second
)

// burstPolicy is what the server does around bursts of connects and closes.
type burstPolicy struct {
	size       uint64 // events since the last release that make one worthwhile
	start      uint64 // events in one tick that start a burst
	quietTicks int    // ticks without an event that settle it
	// gcPercent is GOGC while a burst lasts, set with setGCPercent, which
	// returns the setting it replaces (restored when the burst settles);
	// 0 leaves the collector alone.
	gcPercent    int
	setGCPercent func(int) int
	release      func() // nil: no release
}

// run reads events (connects plus closes so far) at each tick until ctx
// ends. A tick with start or more new events raises GOGC to gcPercent; once
// quietTicks ticks in a row saw none, GOGC is restored and, if size or more
// events came since the last release, release runs. It returns how many
// releases it made.
func (p burstPolicy) run(ctx context.Context, events func() uint64, tick <-chan time.Time) int {
	last := events()
	base := last // events at the last release
	n, quiet, restore := 0, 0, -1
	for {
		select {
		case <-ctx.Done():
			if restore >= 0 {
				p.setGCPercent(restore)
			}
			return n
		case <-tick:
		}
		now := events()
		delta := now - last
		last = now
		if delta > 0 {
			quiet = 0
		} else {
			quiet++
		}
		if delta >= p.start && restore < 0 && p.gcPercent > 0 {
			restore = p.setGCPercent(p.gcPercent)
		}
		if quiet != p.quietTicks {
			continue
		}
		if restore >= 0 {
			p.setGCPercent(restore)
			restore = -1
		}
		if p.release != nil && now-base >= p.size {
			p.release()
			base = now
			n++
		}
	}
}

// watchBursts runs the server's burst policy: GOGC gcPercent during bursts
// (0: unchanged), and with release, one collection and free memory back to
// the OS after each.
func watchBursts(ctx context.Context, events func() uint64, gcPercent int, release bool) {
	p := burstPolicy{size: burstSize, start: burstStart, quietTicks: int(burstQuiet / burstTick),
		gcPercent: gcPercent, setGCPercent: debug.SetGCPercent}
	if release {
		p.release = freeOSMemory
	}
	t := time.NewTicker(burstTick)
	defer t.Stop()
	p.run(ctx, events, t.C)
}

// freeOSMemory is the release: two collections, free pages back to the OS.
// The first only moves what sync.Pools hold (the send queues, frames and
// buffers the burst recycled) to their victim caches; the second drops
// them, so their pages can go back too: about 175 B per connection of 10,000
// in 100 rooms stayed resident after one (the load test's RSS 3 s after the
// ramp against its figure after one more collection).
func freeOSMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
