package realtime

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ourConn returns the server side of the client with ID id.
func ourConn(t *testing.T, ts *testServer, id string) *conn {
	t.Helper()
	fs, ok := ts.hub.reg.Get(id)
	require.True(t, ok)
	return fs.(*conn)
}

// queued returns what c's send queue holds: its frames' bytes and whether
// the last one is a close frame with code.
func queued(c *conn) (bytes, frames int, last []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.queue {
		bytes += len(b)
	}
	if n := len(c.queue); n > 0 {
		last = c.queue[n-1]
	}
	return bytes, len(c.queue), last
}

// Regression (issue 9, defects 3 and 6): a deaf client's queue is bounded in
// bytes, whatever the message size — with a bound in frames it held 256 or
// 1,024 frames of 64 KiB — and once it is dropped as a slow consumer, its
// backlog is dropped too, so that the 1008 close frame is next in line.
func TestDeafClientQueueBoundedInBytes(t *testing.T) {
	cfg := HandlerConfig{RateLimit: -1} // SendQueueBytes: the default, 1 MiB
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		reader := dial(t, ts.url, nil)
		deaf := dial(t, ts.url, nil)
		reader.join("r")
		deaf.join("r")
		reader.readType(MessageTypeJoin)
		dc := ourConn(t, ts, deaf.id)
		payload := strings.Repeat("x", 64<<10)
		bound := 1<<20 + 64<<10 + 1<<10 // the default SendQueueBytes, and one frame past it at most
		maxQueued := 0
		for i := 0; i < 1000 && !dc.isClosing(); i++ { // 64 MB at most
			ts.hub.Broadcast(&Message{Type: "chat", Room: "r", Data: []byte(fmt.Sprintf(`{"i":%d,"p":%q}`, i, payload))})
			reader.readType(MessageTypeChat)
			b, _, _ := queued(dc)
			maxQueued = max(maxQueued, b)
		}
		require.True(t, dc.isClosing(), "the deaf client was dropped")
		t.Logf("most bytes queued for the deaf client: %d (bound %d)", maxQueued, bound)
		assert.LessOrEqual(t, maxQueued, bound, "bytes queued for the deaf client")
		_, frames, last := queued(dc)
		assert.LessOrEqual(t, frames, 2, "backlog dropped: a partly written frame and the close frame at most")
		require.NotEmpty(t, last)
		assert.Equal(t, byte(0x88), last[0], "the close frame is last")
		assert.Equal(t, []byte{0x03, 0xF0}, last[2:4], "1008")
		assert.Equal(t, uint64(1), ts.handler.Stats().SlowConsumers)
	})
}

// isClosing reports whether c's close frame is queued (or sent).
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeQueued
}

// Regression (issue 9, defect 3): a burst of small frames to clients that
// read does not drop any of them: 50 readers, 5,000 messages of 1 KiB at
// 5,000 per second.
func TestBurstOfSmallFramesKeepsReaders(t *testing.T) {
	ts := newTestServer(t, rawDoor, HandlerConfig{RateLimit: -1, DisableJoinLeaveEvents: true})
	const readers, msgs = 50, 5000
	var got [readers]atomic.Int64
	var wg sync.WaitGroup
	for i := range readers {
		c := dial(t, ts.url, nil)
		c.join("r")
		wg.Go(func() {
			for got[i].Load() < msgs {
				c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, b, err := c.ws.ReadMessage()
				if err != nil {
					return
				}
				if strings.Contains(string(b), `"type":"chat"`) {
					got[i].Add(1)
				}
			}
		})
	}
	data := []byte(fmt.Sprintf("%q", strings.Repeat("y", 1000)))
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent := 0; sent < msgs; sent += 5 {
		<-tick.C
		for range 5 {
			ts.hub.Broadcast(&Message{Type: "chat", Room: "r", Data: data})
		}
	}
	wg.Wait()
	for i := range readers {
		assert.Equal(t, int64(msgs), got[i].Load(), "reader %d", i)
	}
	assert.Zero(t, ts.handler.Stats().SlowConsumers)
}

// Regression (issue 9, defect 7): a flood of pings from a client that reads
// is not a slow consumer. Pongs are coalesced (one per ping still waiting),
// so 20,000 pings queue a handful of pongs; before, each queued its own and
// the 1,033rd closed the connection with 1008 "slow consumer".
func TestPingFloodIsNotSlowConsumer(t *testing.T) {
	forEachDoor(t, HandlerConfig{RateLimit: -1}, func(t *testing.T, ts *testServer) {
		c := dial(t, ts.url, nil)
		var pongs atomic.Int64
		c.ws.SetPongHandler(func(string) error { pongs.Add(1); return nil })
		done := make(chan error, 1)
		go func() {
			for {
				c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, b, err := c.ws.ReadMessage()
				if err != nil || strings.Contains(string(b), `"pong"`) {
					done <- err
					return
				}
			}
		}()
		const n = 20000
		for i := range n {
			require.NoError(t, c.ws.WriteControl(websocket.PingMessage, []byte(fmt.Sprint(i)), time.Now().Add(5*time.Second)))
		}
		c.send(map[string]string{"type": "ping"}) // answered by a "pong" message: still open
		require.NoError(t, <-done)
		assert.Zero(t, ts.handler.Stats().SlowConsumers)
		t.Logf("%d pings, %d pongs, connection open", n, pongs.Load())
		assert.Positive(t, pongs.Load())
		assert.Less(t, pongs.Load(), int64(n), "pongs are coalesced")
	})
}

// With the rate limit on, pings count against it: a flood is closed for
// breaking the rate limit (1008), never as a slow consumer.
func TestPingFloodCountsAgainstRateLimit(t *testing.T) {
	forEachDoor(t, HandlerConfig{RateLimit: 50, RateBurst: 100}, func(t *testing.T, ts *testServer) {
		c := dial(t, ts.url, nil)
		go func() {
			for i := range 20000 {
				if c.ws.WriteControl(websocket.PingMessage, []byte(fmt.Sprint(i)), time.Now().Add(5*time.Second)) != nil {
					return
				}
			}
		}()
		assert.Equal(t, websocket.ClosePolicyViolation, c.closeCode())
		assert.Zero(t, ts.handler.Stats().SlowConsumers)
	})
}
