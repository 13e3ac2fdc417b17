package broadcast

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Regression (a review of the first repair): a repair wrote a dirty user's
// count from a snapshot of the hub, where a connection appears before its
// +1 is queued and disappears before its -1 is: a repair in between counted
// a connection twice (or not at all), and the ghost kept the user online
// for good. With a counter (the Handler's CountUser) the count is read and
// the repair queued under the lock that orders the +1s and -1s: repairs
// racing arrivals and departures leave the count exact.
func TestRepairRacingArrivalsKeepsTheCountExact(t *testing.T) {
	srv := redistest.Start(t)
	p := NewPresence(redistest.Client(t, srv.Addr), "rt", "a", 30*time.Second, slog.New(slog.DiscardHandler),
		func() ([]string, map[string][]string) { return nil, nil })
	var mu sync.Mutex // the Handler's user lock
	n := 0
	p.SetUserCounter(func(_ string, fn func(int)) { mu.Lock(); defer mu.Unlock(); fn(n) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	change := func(d int) {
		mu.Lock()
		defer mu.Unlock()
		n += d
		p.AddConnection("alice", int64(d), nil)
	}
	count := func() int {
		c, err := p.Connections(context.Background(), "alice")
		require.NoError(t, err)
		return c
	}

	mu.Lock()
	n++ // a connection whose +1 was lost (Redis away): the key is dirty
	mu.Unlock()
	p.dirty.user("alice")
	var wg sync.WaitGroup
	for i := range 200 { // arrivals, and repairs racing them
		wg.Go(func() { change(+1) })
		if i%10 == 0 {
			wg.Go(func() { p.dirty.user("alice"); p.repair() })
		}
	}
	wg.Wait()
	require.Eventually(t, func() bool { return count() == 201 }, 5*time.Second, 20*time.Millisecond, "201 connections")
	for range 201 {
		wg.Go(func() { change(-1) })
	}
	wg.Go(func() { p.dirty.user("alice"); p.repair() })
	wg.Wait()
	require.Eventually(t, func() bool { return count() == 0 }, 5*time.Second, 20*time.Millisecond, "none left: no ghost")
}
