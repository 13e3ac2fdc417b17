package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// burstRun drives a burstPolicy tick by tick and records what it did.
type burstRun struct {
	vals chan uint64 // what each read of the event count returns
	tick chan time.Time
	done chan int

	mu  sync.Mutex
	log []string // "gc 100", "gc 25", "release"
}

func startBurstRun(p burstPolicy) (*burstRun, context.CancelFunc) {
	return startBurstRunAt(p, 25)
}

// startBurstRunAt is startBurstRun with GOGC at gc to start with.
func startBurstRunAt(p burstPolicy, gc int) (*burstRun, context.CancelFunc) {
	r := &burstRun{vals: make(chan uint64), tick: make(chan time.Time), done: make(chan int)}
	p.setGCPercent = func(v int) int {
		r.note("gc " + itoa(v))
		old := gc
		gc = v
		return old
	}
	p.release = func() { r.note("release") }
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- p.run(ctx, func() uint64 { return <-r.vals }, r.tick) }()
	r.vals <- 0 // the count when it starts
	return r, cancel
}

func (r *burstRun) note(s string) { r.mu.Lock(); r.log = append(r.log, s); r.mu.Unlock() }

// at ticks with the count at v and returns what the policy did at the
// previous tick (its work is done once this one is taken).
func (r *burstRun) at(v uint64) []string {
	r.tick <- time.Time{}
	r.mu.Lock()
	got := r.log
	r.log = nil
	r.mu.Unlock()
	r.vals <- v
	return got
}

func itoa(v int) string { return map[int]string{25: "25", 100: "100", 200: "200", -1: "off"}[v] }

// A release follows a burst of at least the burst size once a tick saw no
// new event; a burst still going on, or a trickle below the size, gets
// none; each burst gets one.
func TestReleaseAfterBursts(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 1000, quietTicks: 1})
	r.at(50)
	r.at(50)
	assert.Empty(t, r.at(50), "50 events are no burst")
	for v := uint64(80); v <= 200; v += 30 {
		assert.Empty(t, r.at(v), "no release while the burst lasts")
	}
	r.at(200) // quiet: released
	assert.Equal(t, []string{"release"}, r.at(200), "released once the burst settled")
	r.at(200)
	assert.Empty(t, r.at(250), "one release per burst")
	r.at(300)
	r.at(300)
	assert.Equal(t, []string{"release"}, r.at(300), "the next burst gets its own")
	cancel()
	assert.Equal(t, 2, <-r.done)
}

// A tick with start events or more raises GOGC for the burst; it is
// restored, before the release, once quietTicks ticks saw nothing; a
// trickle under start leaves it alone; a burst cut short by the end of the
// server restores it too.
func TestBurstRaisesGCPercentWhileItLasts(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 2, gcPercent: 100})
	r.at(10)
	assert.Empty(t, r.at(25), "10 events in a tick are no burst")
	assert.Empty(t, r.at(60), "nor 15")
	assert.Equal(t, []string{"gc 100"}, r.at(90), "35 in a tick start one")
	assert.Empty(t, r.at(150), "raised once")
	r.at(150)
	assert.Empty(t, r.at(150), "one quiet tick is not enough")
	assert.Equal(t, []string{"gc 25", "release"}, r.at(150), "settled: GOGC back, then the release")
	assert.Empty(t, r.at(150))
	r.at(200)
	assert.Equal(t, []string{"gc 100"}, r.at(200))
	cancel()
	assert.Equal(t, 1, <-r.done)
	assert.Equal(t, []string{"gc 25"}, r.log, "restored when the server stops")
}

// Regression: a pod always has some churn. A burst settles once the rate
// falls under a tenth of the one that started it, not only when nothing at
// all connects or closes (which left GOGC raised for good after one storm);
// the release follows. Without a burst, a trickle gets no release.
func TestBurstSettlesUnderSteadyChurn(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 3, gcPercent: 100})
	v := uint64(0)
	for range 10 { // a trickle of 1 a tick: no burst, never silent
		v++
		assert.Empty(t, r.at(v))
	}
	v += 500
	r.at(v)
	assert.Equal(t, []string{"gc 100"}, r.at(v+1))
	v++
	var log []string
	for range 5 { // 1 a tick: under 20/10
		v++
		log = append(log, r.at(v)...)
	}
	assert.Equal(t, []string{"gc 25", "release"}, log, "settled while churning")
	cancel()
	<-r.done
}

// A burst does not turn a collector that was off on, nor lower a higher
// GOGC: the setting is put back in the same tick.
func TestBurstLeavesGCOffOrHigherAlone(t *testing.T) {
	for _, gc := range []int{-1, 200} {
		r, cancel := startBurstRunAt(burstPolicy{size: 100, start: 20, quietTicks: 1, gcPercent: 100}, gc)
		r.at(0)
		r.at(50)
		assert.Equal(t, []string{"gc 100", "gc " + itoa(gc)}, r.at(50), "put back in the same tick")
		assert.Empty(t, r.at(50), "nothing to restore")
		cancel()
		<-r.done
	}
}

// Regression (review): with GOGC left alone (set in the environment), a
// burst under steady churn settled only after a second with no connect or
// close at all: no release ever came.
func TestBurstSettlesWithoutRaisingGC(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 3})
	v := uint64(500)
	r.at(v)
	var log []string
	for range 6 {
		v++
		log = append(log, r.at(v)...)
	}
	assert.Equal(t, []string{"release"}, log)
	cancel()
	<-r.done
}

// Regression (review): a pod whose usual churn is above a tenth of a
// burst's rate settles after a storm once it is back near its usual rate,
// and at the latest after maxTicks.
func TestBurstSettlesOnBusyPods(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 3, gcPercent: 100})
	v := uint64(0)
	for range 50 { // usual churn: 5 a tick, over start/10
		v += 5
		r.at(v)
	}
	v += 500
	r.at(v)
	var log []string
	for range 6 {
		v += 5
		log = append(log, r.at(v)...)
	}
	assert.Equal(t, []string{"gc 100", "gc 25", "release"}, log, "settled at its usual rate")
	cancel()
	<-r.done

	r, cancel = startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 3, maxTicks: 10, gcPercent: 100})
	v = 0
	r.at(v)
	v += 500
	r.at(v)
	log = nil
	for range 12 { // stays at 15 a tick, as busy as ever
		v += 15
		log = append(log, r.at(v)...)
	}
	assert.Equal(t, []string{"gc 100", "gc 25", "release"}, log, "settled at maxTicks")
	cancel()
	<-r.done
}

// Regression (review): waves of reconnects each settled and released (two
// full collections) every second or so; releases are now gapTicks apart.
func TestReleasesAreSpacedOut(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 2, gapTicks: 20})
	v := uint64(0)
	releases := 0
	for range 10 { // a wave of 1,000 every 4 ticks
		v += 1000
		for _, s := range r.at(v) {
			if s == "release" {
				releases++
			}
		}
		for range 3 {
			for _, s := range r.at(v) {
				if s == "release" {
					releases++
				}
			}
		}
	}
	assert.Equal(t, 2, releases, "40 ticks, one release per 20")
	cancel()
	<-r.done
}

// A counter that goes back does not pass for a burst.
func TestBurstCounterGoingBack(t *testing.T) {
	r, cancel := startBurstRun(burstPolicy{size: 100, start: 20, quietTicks: 1, gcPercent: 100})
	r.at(1000)
	r.at(1000)
	r.at(999)
	assert.Empty(t, r.at(999))
	assert.Empty(t, r.at(999))
	cancel()
	<-r.done
}
