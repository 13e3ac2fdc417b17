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
// closes in one burstTick. It has settled after burstQuiet of ticks under a
// low-water mark: a tenth of that, or twice the pod's usual rate before the
// burst if that is higher (a pod always has some churn: waiting for none
// would keep GOGC raised for good after one storm), or at the latest after
// burstMax. A release follows once burstSize events came since the last one,
// at most once per releaseGap (waves of reconnects would otherwise have a
// release, two full collections, each). Without a burst, a release needs
// burstQuiet without any connect or close.
const (
	burstSize  = 1000
	burstStart = 100
	burstTick  = 100 * time.Millisecond
	burstQuiet = time.Second
	burstMax   = time.Minute
	releaseGap = 10 * time.Second
)

// burstPolicy is what the server does around bursts of connects and closes.
type burstPolicy struct {
	size       uint64 // events since the last release that make one worthwhile
	start      uint64 // events in one tick that start a burst
	quietTicks int    // ticks under the low-water mark (none, without a burst) that settle it
	maxTicks   int    // ticks after which a burst has settled however busy the pod is (0: no limit)
	gapTicks   int    // ticks from one release to the next, at least
	// gcPercent is GOGC while a burst lasts, set with setGCPercent, which
	// returns the setting it replaces (restored when the burst settles); 0
	// leaves the collector alone, as does a setting that was off or higher.
	gcPercent    int
	setGCPercent func(int) int
	release      func() // nil: no release
}

// burstState is what burstPolicy.run tracks between ticks.
type burstState struct {
	last, base    uint64  // events at the last tick, and at the last release
	calm          float64 // events per tick outside bursts, smoothed
	quiet, silent int     // ticks in a row under the low-water mark, and with none
	inBurst       bool
	burstTicks    int  // how long the burst has lasted
	sinceRelease  int  // ticks since the last release
	raised        bool // GOGC is gcPercent for the burst
	restore       int  // the GOGC to restore then
	releases      int
}

// run reads events (connects plus closes so far) at each tick until ctx
// ends, and applies the policy (step). It returns how many releases it
// made.
func (p burstPolicy) run(ctx context.Context, events func() uint64, tick <-chan time.Time) int {
	st := burstState{last: events(), sinceRelease: p.gapTicks}
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

// step is one tick, events being the count now: a tick with start or more
// new events starts a burst (GOGC raised to gcPercent); one that settles it
// restores GOGC and may release.
func (p burstPolicy) step(st *burstState, now uint64) {
	if now < st.last { // a counter that went back: start over from here
		st.last, st.base = now, min(st.base, now)
		return
	}
	delta := now - st.last
	st.last = now
	st.sinceRelease++
	st.silent++
	if delta > 0 {
		st.silent = 0
	}
	if delta >= p.start && !st.inBurst {
		p.startBurst(st)
	}
	settled := false
	if st.inBurst {
		st.burstTicks++
		st.quiet++
		if float64(delta) >= max(float64(p.start)/10, 2*st.calm, 1) {
			st.quiet = 0
		}
		settled = st.quiet >= p.quietTicks || p.maxTicks > 0 && st.burstTicks >= p.maxTicks
	} else {
		st.calm = 0.9*st.calm + 0.1*float64(delta)
	}
	if settled {
		st.inBurst = false
		if st.raised {
			p.setGCPercent(st.restore)
			st.raised = false
		}
	}
	if (settled || st.silent == p.quietTicks) && p.release != nil && now-st.base >= p.size && st.sinceRelease >= p.gapTicks {
		p.release()
		st.base, st.sinceRelease = now, 0
		st.releases++
	}
}

// startBurst marks a burst and raises GOGC to gcPercent, unless that would
// lower it or turn the collector on (then it is put back at once).
func (p burstPolicy) startBurst(st *burstState) {
	st.inBurst, st.burstTicks, st.quiet = true, 0, 0
	if p.gcPercent <= 0 {
		return
	}
	old := p.setGCPercent(p.gcPercent)
	if old < 0 || old >= p.gcPercent {
		p.setGCPercent(old)
		return
	}
	st.restore, st.raised = old, true
}

// watchBursts runs the server's burst policy: GOGC gcPercent during bursts
// (0: unchanged), and with release, one collection and free memory back to
// the OS after each.
func watchBursts(ctx context.Context, events func() uint64, gcPercent int, release bool) {
	p := burstPolicy{size: burstSize, start: burstStart, quietTicks: int(burstQuiet / burstTick),
		maxTicks: int(burstMax / burstTick), gapTicks: int(releaseGap / burstTick),
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
