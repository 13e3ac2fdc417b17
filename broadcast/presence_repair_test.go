package broadcast

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
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

// Regression (TestCrossPodPresence failed in full runs): after Redis came
// back empty, a renewal found the lease gone, wrote it again and queued the
// rewrite of the pod's entries, but a rewrite that failed was forgotten: the
// lease was back, so no renewal rewrote it again, and the user stayed absent
// for as long as the pod lived. Right after a restart the rewrites often
// fail: the client notices that an idle connection died only when it next
// writes on it (EOF), and does not retry writes. A rewrite that fails is now
// repaired, within a renewal.
func TestFailedRewriteAfterRedisCameBackEmptyIsRepaired(t *testing.T) {
	srv := redistest.Start(t)
	raw := redistest.Client(t, srv.Addr)
	client := &failingWrites{Client: raw}
	p := NewPresence(client, "rt", "a", 600*time.Millisecond, slog.New(slog.DiscardHandler),
		func() ([]string, map[string][]string) { return []string{"alice"}, map[string][]string{"r": {"alice"}} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	present := func() bool {
		users, err := p.RoomUsers(context.Background(), "r")
		online, err2 := p.Online(context.Background(), "alice")
		return err == nil && err2 == nil && len(users) == 1 && users[0] == "alice" && online
	}
	require.Eventually(t, present, 5*time.Second, 20*time.Millisecond, "entries written at start")

	// Redis loses everything, and the first write to each key fails.
	client.failNext(p.userKey("alice"), p.roomKey("r"))
	require.NoError(t, raw.Do(context.Background(), raw.B().Flushall().Build()).Error())
	require.Eventually(t, func() bool { return client.failed() == 2 }, 5*time.Second, 10*time.Millisecond, "the rewrites were tried and failed")
	// Repaired at the latest at the next renewal (TTL/3 = 200 ms).
	require.Eventually(t, present, 5*time.Second, 20*time.Millisecond, "failed rewrites repaired")
}

// failingWrites is a client whose next HSET to each key given to failNext
// fails with EOF without reaching Redis, as a write on a connection that
// died while idle does.
type failingWrites struct {
	rueidis.Client
	mu    sync.Mutex
	armed map[string]bool
	n     int
}

func (c *failingWrites) failNext(keys ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = map[string]bool{}
	for _, k := range keys {
		c.armed[k] = true
	}
}

func (c *failingWrites) failed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *failingWrites) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	if ks := cmd.Commands(); len(ks) > 1 && ks[0] == "HSET" {
		c.mu.Lock()
		fail := c.armed[ks[1]]
		if fail {
			delete(c.armed, ks[1])
			c.n++
		}
		c.mu.Unlock()
		if fail {
			return rueidis.NewErrorResult(io.EOF)
		}
	}
	return c.Client.Do(ctx, cmd)
}
