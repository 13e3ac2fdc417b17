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
// closes in one burstTick; it has settled after burstQuiet of ticks with
// fewer than a tenth of that (a pod always has some churn: waiting for none
// would keep GOGC raised for good after one storm), and a release follows
// once burstSize events came since the last one. Without a burst, a release
// needs burstQuiet without any connect or close, as before bursts raised
// GOGC.
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
	quietTicks int    // ticks under start/10 events (none, without a burst) that settle it
	// gcPercent is GOGC while a burst lasts, set with setGCPercent, which
	// returns the setting it replaces (restored when the burst settles);
	// 0 leaves the collector alone.
	gcPercent    int
	setGCPercent func(int) int
	release      func() // nil: no release
}

// burstState is what burstPolicy.run tracks between ticks.
type burstState struct {
	last, base    uint64 // events at the last tick, and at the last release
	quiet, silent int    // ticks in a row under the low-water mark, and with none
	raised        bool   // GOGC is gcPercent for a burst
	restore       int    // the GOGC to restore then (-1 is "off", a setting too)
	releases      int
}

// run reads events (connects plus closes so far) at each tick until ctx
// ends. A tick with start or more new events raises GOGC to gcPercent; once
// quietTicks ticks in a row saw fewer than start/10, GOGC is restored and,
// if size or more events came since the last release, release runs. It
// returns how many releases it made.
func (p burstPolicy) run(ctx context.Context, events func() uint64, tick <-chan time.Time) int {
	st := burstState{last: events()}
	st.base = st.last
	for {
		select {
		case <-ctx.Done():
			if st.raised {
				p.setGCPercent(st.restore)
			}
			return st.releases
		case <-tick:
		}
		p.step(&st, events())
	}
}

// step is one tick, events being the count now.
func (p burstPolicy) step(st *burstState, now uint64) {
	delta := now - st.last
	st.last = now
	st.quiet, st.silent = st.quiet+1, st.silent+1
	if delta >= max(p.start/10, 1) {
		st.quiet = 0
	}
	if delta > 0 {
		st.silent = 0
	}
	if delta >= p.start && !st.raised && p.gcPercent > 0 {
		st.restore, st.raised = p.setGCPercent(p.gcPercent), true
	}
	settled := st.quiet == p.quietTicks && st.raised
	if settled {
		p.setGCPercent(st.restore)
		st.raised = false
	}
	if (settled || st.silent == p.quietTicks) && p.release != nil && now-st.base >= p.size {
		p.release()
		st.base = now
		st.releases++
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
