package realtime

import (
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkHeap fails unless x is a min-heap whose connections know their place.
func checkHeap(t *testing.T, x *expiries) {
	t.Helper()
	require.EqualValues(t, len(x.heap), x.n.Load())
	for i, e := range x.heap {
		require.EqualValues(t, i+1, e.c.expPos, "entry %d's place", i)
		if i > 0 {
			require.LessOrEqual(t, x.heap[(i-1)/2].at, e.at, "entry %d under its parent", i)
		}
	}
}

// Connections set, moved and removed in any order come out at their
// expiry, earliest first, each once.
func TestExpiryHeapOrder(t *testing.T) {
	var x expiries
	r := rand.New(rand.NewPCG(1, 2))
	conns := make([]*conn, 1000)
	want := map[*conn]int64{}
	for i := range conns {
		conns[i] = &conn{}
		at := r.Int64N(1_000_000)
		x.set(conns[i], at)
		want[conns[i]] = at
	}
	checkHeap(t, &x)
	for _, c := range conns[:300] { // removed
		require.True(t, x.remove(c))
		require.False(t, x.remove(c), "twice")
		delete(want, c)
	}
	for _, c := range conns[300:600] { // moved
		at := r.Int64N(1_000_000)
		x.set(c, at)
		want[c] = at
	}
	checkHeap(t, &x)
	var got []int64
	for now := int64(0); now <= 1_000_000; now += 50_000 {
		for _, c := range x.popDue(now, nil) {
			at, ok := want[c]
			require.True(t, ok, "a connection removed, or popped twice")
			require.LessOrEqual(t, at, now, "popped before its time")
			assert.Zero(t, c.expPos)
			delete(want, c)
			got = append(got, at)
		}
		checkHeap(t, &x)
		if next, ok := x.next(); ok {
			require.Greater(t, next, now, "one due left in the heap")
		}
	}
	assert.Empty(t, want, "never popped")
	assert.True(t, sort.SliceIsSorted(got, func(i, j int) bool { return got[i] < got[j] }), "earliest first")
	assert.Zero(t, x.n.Load())
}

// A connection that expires costs the heap an entry, not a timer, a
// closure and a map entry of its own (about 200 bytes each before), and
// moving one in a full heap allocates nothing.
func TestExpiryCostsAnEntryPerConnection(t *testing.T) {
	conns := make([]*conn, 10_000)
	var x expiries
	for i := range conns {
		conns[i] = &conn{}
		x.set(conns[i], int64(i))
	}
	perConn := float64(cap(x.heap)) * float64(unsafe.Sizeof(expiryEntry{})) / float64(len(conns))
	assert.Less(t, perConn, 32.0, "bytes the heap holds per connection")
	c := conns[5000]
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		x.remove(c)
		x.set(c, 12345)
		x.set(c, 54321) // a refresh
	}))
}

// Regression (review): an expiry past 2262 ("never" in a JWT is often exp
// 9999999999) wrapped to a negative time, and the timer fired and re-armed
// at once forever; one at 1970 read as "not armed" and never fired.
func TestFarAndPastExpiries(t *testing.T) {
	assert.EqualValues(t, int64(math.MaxInt64), expiryNanos(time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)))
	assert.EqualValues(t, 1, expiryNanos(time.Unix(0, 0)))
	assert.EqualValues(t, 1, expiryNanos(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)))
	now := time.Now()
	assert.Equal(t, now.UnixNano(), expiryNanos(now))

	ts := newTestServer(t, rawDoor, HandlerConfig{AuthenticateIdentity: identityAuth})
	c := dial(t, ts.url, http.Header{"X-User": {"u"}, "X-TTL": {"2400000h"}}) // about 2300
	time.Sleep(100 * time.Millisecond)
	x := &ts.handler.expiry
	x.mu.Lock()
	require.Len(t, x.heap, 1)
	assert.EqualValues(t, int64(math.MaxInt64), x.heap[0].at)
	assert.EqualValues(t, int64(math.MaxInt64), x.timerAt, "armed for then, not firing now")
	x.mu.Unlock()
	c.send(map[string]any{"type": "ping"})
	assert.Equal(t, MessageTypePong, c.read().Type, "the connection lives")
}

// A heap that held a storm's entries gives its memory back as they go.
func TestExpiryHeapShrinks(t *testing.T) {
	var x expiries
	conns := make([]*conn, 10_000)
	for i := range conns {
		conns[i] = &conn{}
		x.set(conns[i], int64(i))
	}
	for _, c := range conns[:9_900] {
		x.remove(c)
	}
	checkHeap(t, &x)
	assert.LessOrEqual(t, cap(x.heap), 1024, "capacity kept for 100 entries")
	assert.Len(t, x.popDue(math.MaxInt64, nil), 100)
}

// Connections with different expiries are each closed with 3000 at theirs,
// and none is left watched.
func TestTokensExpireEachAtItsTime(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{AuthenticateIdentity: identityAuth})
	ttls := []time.Duration{600 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	start := time.Now()
	closed := make(chan time.Duration, len(ttls))
	for _, ttl := range ttls {
		c := dial(t, ts.url, http.Header{"X-User": {"u"}, "X-TTL": {ttl.String()}})
		go func() {
			c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			var err error
			for err == nil {
				_, _, err = c.ws.ReadMessage()
			}
			if ce, ok := err.(*websocket.CloseError); ok && ce.Code == int(CloseUnauthorized) {
				closed <- time.Since(start)
				return
			}
			closed <- -1
		}()
	}
	var at []time.Duration
	for range ttls {
		d := <-closed
		require.Positive(t, d, "closed with 3000")
		at = append(at, d)
	}
	assert.GreaterOrEqual(t, at[0], 150*time.Millisecond, "the first not before its expiry")
	assert.GreaterOrEqual(t, at[2], 550*time.Millisecond, "the last not before its expiry")
	assert.EqualValues(t, 3, ts.handler.Stats().Expired)
	assert.Eventually(t, func() bool { return ts.handler.expiry.armed() == 0 }, time.Second, 10*time.Millisecond)
}

// BenchmarkExpiryRetained measures what watching 100,000 connections'
// expiries keeps on the heap, per connection (HeapAlloc after collections):
// "heap" is expiries, "timers" one time.AfterFunc, its closure and a map
// entry each, as before. go test -run '^$' -bench '^BenchmarkExpiryRetained$' -benchtime 1x .
func BenchmarkExpiryRetained(b *testing.B) {
	const n = 100_000
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{}
	}
	retained := func(watch func()) float64 {
		before := heapAfterGC()
		watch()
		return float64(heapAfterGC()-before) / n
	}
	b.Run("mode=heap", func(b *testing.B) {
		for b.Loop() {
			for _, c := range conns {
				c.expPos = 0 // out of the last iteration's heap
			}
			var x expiries
			b.ReportMetric(retained(func() {
				for i, c := range conns {
					x.set(c, int64(i))
				}
			}), "B/conn")
			runtime.KeepAlive(&x)
		}
	})
	b.Run("mode=timers", func(b *testing.B) {
		for b.Loop() {
			m := map[*conn]*time.Timer{}
			b.ReportMetric(retained(func() {
				for _, c := range conns {
					m[c] = time.AfterFunc(time.Hour, func() { _ = c })
				}
			}), "B/conn")
			for _, t := range m {
				t.Stop()
			}
		}
	})
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
