package server

import (
	"context"
	"runtime/debug"
	"time"
)

// After a reconnect storm the heap holds the garbage of thousands of
// handshakes and the runtime keeps the pages it grew to, though almost all
// that stays is long-lived connection state: the process would hold that
// memory until the scavenger slowly gives it back. As a JVM's periodic
// collection returns an idle heap, the server runs one collection and
// returns the free memory to the OS once a burst has settled.

// burstSize is how many connects and closes since the last release make a
// burst worth a collection; burstQuiet is how long no connect or close
// must have happened for it to have settled.
const (
	burstSize  = 1000
	burstQuiet = time.Second
)

// releaseAfterBursts reads events (connects plus closes so far) at each
// tick until ctx ends, and calls release once a burst of at least size
// events was followed by a tick with none. It returns how many releases it
// made.
func releaseAfterBursts(ctx context.Context, events func() uint64, tick <-chan time.Time, size uint64, release func()) int {
	last := events()
	base := last // events at the last release
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-tick:
		}
		now := events()
		if now == last && now-base >= size {
			release()
			base = now
			n++
		}
		last = now
	}
}

// releaseMemory runs releaseAfterBursts with the server's burst size and
// quiet time, releasing with debug.FreeOSMemory.
func releaseMemory(ctx context.Context, events func() uint64) {
	t := time.NewTicker(burstQuiet)
	defer t.Stop()
	releaseAfterBursts(ctx, events, t.C, burstSize, freeOSMemory)
}

// freeOSMemory is the release: one collection, free pages back to the OS.
func freeOSMemory() { debug.FreeOSMemory() }
