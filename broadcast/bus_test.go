package broadcast

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

func quiet() Options { return Options{Logger: slog.New(slog.DiscardHandler)} }

func run(t *testing.T, b *Bus) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	require.Eventually(t, func() bool { return b.Ready() == nil }, 10*time.Second, 10*time.Millisecond)
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestPartitionChannelsAreHashTagged(t *testing.T) {
	b := New(nil, "pod", Options{Partitions: 8}, nil)
	for _, room := range []string{"a", "b", "lobby", ""} {
		p := b.Partition(room)
		assert.Less(t, p, 8)
		assert.Equal(t, fmt.Sprintf("rt.{p%d}", p), b.PartitionChannel(p))
	}
	assert.Equal(t, "rt.{d.pod}", b.DirectChannel("pod"))
}

// Watch subscribes while a key of the partition is watched; the last Unwatch
// unsubscribes, and what is published then no longer arrives.
func TestWatchLifecycle(t *testing.T) {
	srv := redistest.Start(t)
	var got atomic.Int64
	recv := New(redistest.Client(t, srv.Addr), "recv", quiet(), func(bool, []byte) { got.Add(1) })
	send := New(redistest.Client(t, srv.Addr), "send", quiet(), nil)
	run(t, recv)
	assert.Equal(t, 0, recv.Stats().Partitions)

	recv.Watch("room")
	recv.Watch("room") // two keys (rooms) counted in the same partition
	require.Eventually(t, func() bool { return recv.Listening("room") }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, recv.Stats().Partitions)
	require.NoError(t, send.Publish(context.Background(), "room", []byte("x")))
	require.Eventually(t, func() bool { return got.Load() == 1 }, 5*time.Second, 10*time.Millisecond)

	recv.Unwatch("room")
	assert.Equal(t, 1, recv.Stats().Partitions, "one key still watched")
	recv.Unwatch("room")
	require.Eventually(t, func() bool { return !recv.Listening("room") }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0, recv.Stats().Partitions)
	require.NoError(t, send.Publish(context.Background(), "room", []byte("y")))
	time.Sleep(200 * time.Millisecond)
	assert.EqualValues(t, 1, got.Load(), "nothing arrives once unsubscribed")

	// Quick unwatch/watch cycles leave exactly one working subscription.
	for range 20 {
		recv.Watch("room")
		recv.Unwatch("room")
	}
	recv.Watch("room")
	// Listening also needs the link's canary back (Ready): on a loaded
	// machine running -race that can take seconds (this failed in CI at 5 s).
	if !assert.Eventually(t, func() bool { return recv.Listening("room") }, 20*time.Second, 10*time.Millisecond) {
		t.Fatalf("not listening: ready %v, partitions %d", recv.Ready(), recv.Stats().Partitions)
	}
	require.NoError(t, send.Publish(context.Background(), "room", []byte("z")))
	require.Eventually(t, func() bool { return got.Load() == 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	assert.EqualValues(t, 2, got.Load(), "delivered once")
}

// A handler that stalls does not stall Redis: what does not fit the queue
// is dropped and counted, and publishing goes on.
func TestSlowHandlerDropsAndCounts(t *testing.T) {
	srv := redistest.Start(t)
	release := make(chan struct{})
	opts := quiet()
	opts.QueueSize = 4
	recv := New(redistest.Client(t, srv.Addr), "recv", opts, func(bool, []byte) { <-release })
	client := redistest.Client(t, srv.Addr)
	send := New(client, "send", quiet(), nil)
	stop := run(t, recv)
	recv.Watch("room")
	require.Eventually(t, func() bool { return recv.Listening("room") }, 5*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 200 {
		require.NoError(t, send.Publish(ctx, "room", []byte(fmt.Sprint(i))), "publish %d", i)
	}
	require.Eventually(t, func() bool { return recv.Stats().Dropped > 0 }, 5*time.Second, 10*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool {
		s := recv.Stats()
		return s.Received+s.Dropped == 200
	}, 5*time.Second, 10*time.Millisecond, "every message is either delivered or counted as dropped: %+v", recv.Stats())
	stop()
	assert.ErrorIs(t, recv.Ready(), ErrNotRunning)
}
