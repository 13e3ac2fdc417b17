package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// A release follows a burst of at least the burst size at the first tick
// that sees no new event; a burst still going on, or a trickle below the
// size, gets none; each burst gets one.
func TestReleaseAfterBursts(t *testing.T) {
	vals := make(chan uint64) // what each read of the event count returns
	tick := make(chan time.Time)
	var releases atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- releaseAfterBursts(ctx, func() uint64 { return <-vals }, tick, 100, func() { releases.Add(1) })
	}()
	vals <- 0 // the count when it starts
	// at ticks with the count at v and returns the releases made before
	// this tick (the previous tick's work is done once this one is taken).
	at := func(v uint64) uint64 {
		tick <- time.Time{}
		r := releases.Load()
		vals <- v
		return r
	}
	at(50)
	at(50)
	assert.Equal(t, uint64(0), at(50), "50 events are no burst")
	for v := uint64(80); v <= 200; v += 30 {
		assert.Equal(t, uint64(0), at(v), "no release while the burst lasts")
	}
	at(200) // quiet: released
	assert.Equal(t, uint64(1), at(200), "released once the burst settled")
	at(200)
	assert.Equal(t, uint64(1), at(250), "one release per burst")
	at(300)
	at(300)
	assert.Equal(t, uint64(2), at(300), "the next burst gets its own")
	cancel()
	assert.Equal(t, 2, <-done)
}
