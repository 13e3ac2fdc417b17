package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/realtimehub/realtime"
)

// The small-room storm: 1,000 connections into 20 rooms of 50, the most
// members a room may have for single join events (JoinEventsMaxMembers).
const (
	stormConns = 1_000
	stormRooms = 20
	stormPer   = stormConns / stormRooms
	stormDials = 64               // dials in flight at once
	stormWait  = 30 * time.Second // bound on an op's deliveries
)

// BenchmarkSmallRoomJoinStorm measures what a reconnect storm into small
// rooms costs a real Handler in socket writes. Per op, 1,000 gorilla
// clients dial the raw door (Serve on a loopback listener) and each joins
// room-<i%20> (20 rooms of 50 members); the op ends when the clients have
// received their join acknowledgements and the join events of the members
// who joined their rooms after them (member k of a room hears 50-1-k),
// 25,500 join messages in all, and each room's first member has heard all
// 50. "events=batched" is the default HandlerConfig (a room's events of a
// 100 ms window reach each member in one write); "events=per-event" is
// JoinEventsDelay -1 (each event written at once, the rule before
// batching). writes/op and frames/op are the handler's Writes and
// FramesOut (each client's connected message included); writes/join is
// writes/op per join. extra-joins/op counts join messages past the 25,500
// at the op's end: events a member got about a join before its own, which
// should be 0 (a batch that flush took from the map before a joiner became
// a member, and sent after, reaches it). Clients run in this process:
// ns/op and allocs/op include their dials and reads. Server start and
// teardown are not timed.
func BenchmarkSmallRoomJoinStorm(b *testing.B) {
	modes := []struct {
		name  string
		delay time.Duration
	}{
		{"batched", 0},
		{"per-event", -1},
	}
	for _, mode := range modes {
		b.Run("events="+mode.name, func(b *testing.B) {
			base := runtime.NumGoroutine()
			b.ReportAllocs()
			var writes, frames, extra uint64
			for b.Loop() {
				b.StopTimer()
				srv := startStormServer(b, realtime.HandlerConfig{JoinEventsDelay: mode.delay})
				b.StartTimer()
				func() {
					defer func() { // also when storm fails
						b.StopTimer()
						srv.close(b)
						b.StartTimer()
					}()
					w, f, x := srv.storm(b)
					writes += w
					frames += f
					extra += x
				}()
			}
			n := float64(b.N)
			b.ReportMetric(float64(writes)/n, "writes/op")
			b.ReportMetric(float64(frames)/n, "frames/op")
			b.ReportMetric(float64(writes)/n/stormConns, "writes/join")
			b.ReportMetric(float64(extra)/n, "extra-joins/op")
			b.StopTimer()
			waitGoroutines(b, base)
		})
	}
}

// stormServer is a hub, a handler on the raw door and the storm's clients.
type stormServer struct {
	h       *realtime.Handler
	url     string
	cancel  context.CancelFunc
	ran     chan struct{} // hub.Run returned
	served  chan struct{} // Serve returned
	readers sync.WaitGroup
	joins   [stormConns]atomic.Int32 // join messages client i received
	mu      sync.Mutex
	clients []*websocket.Conn
}

func startStormServer(b *testing.B, cfg realtime.HandlerConfig) *stormServer {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	hub := realtime.NewHub(logger)
	h := realtime.NewHandler(hub, logger, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s := &stormServer{h: h, cancel: cancel, ran: make(chan struct{}), served: make(chan struct{}),
		clients: make([]*websocket.Conn, 0, stormConns)}
	go func() { hub.Run(ctx); close(s.ran) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		<-s.ran
		b.Fatal(err)
	}
	go func() { h.Serve(ln); close(s.served) }()
	s.url = "ws://" + ln.Addr().String() + "/ws"
	return s
}

// storm dials and joins every client, waits until the join messages have
// all arrived and returns the handler's writes and frames meanwhile, and
// how many join messages came past those due.
func (s *stormServer) storm(b *testing.B) (writes, frames, extra uint64) {
	b.Helper()
	before := s.h.Stats()
	errs := make(chan error, stormDials)
	var dialers sync.WaitGroup
	for w := range stormDials {
		dialers.Go(func() {
			for i := w; i < stormConns; i += stormDials {
				if err := s.join(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	dialers.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(stormWait)
	got, done := s.received()
	for !done {
		if time.Now().After(deadline) {
			st := s.h.Stats()
			b.Fatalf("after %v: %d join messages of %d received (FramesOut %d, Writes %d, SlowConsumers %d, Closed %d)",
				stormWait, got, stormWant, st.FramesOut-before.FramesOut, st.Writes-before.Writes, st.SlowConsumers, st.Closed)
		}
		time.Sleep(time.Millisecond)
		got, done = s.received()
	}
	after := s.h.Stats()
	if after.Closed != before.Closed || after.SlowConsumers != before.SlowConsumers {
		b.Fatalf("connections closed during the storm: %d (slow consumers %d)",
			after.Closed-before.Closed, after.SlowConsumers-before.SlowConsumers)
	}
	return after.Writes - before.Writes, after.FramesOut - before.FramesOut, uint64(got - stormWant)
}

// stormWant is the join messages due: member k of a room hears its own
// acknowledgement and the joins of the stormPer-1-k members after it.
const stormWant = stormConns + stormRooms*stormPer*(stormPer-1)/2

// received returns the join messages the clients have received, and whether
// they are all there: stormWant in all, and in each room a member (its
// first) that heard every member's join. The second rule keeps a join event
// a member should not have got (extra) from ending the op early.
func (s *stormServer) received() (total int, done bool) {
	var full [stormRooms]bool
	for i := range s.joins {
		n := int(s.joins[i].Load())
		total += n
		if n >= stormPer {
			full[i%stormRooms] = true
		}
	}
	for _, f := range full {
		if !f {
			return total, false
		}
	}
	return total, total >= stormWant
}

// join dials client i, starts its reader and sends its join.
func (s *stormServer) join(i int) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(s.url, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("dial %d: %w", i, err)
	}
	s.mu.Lock()
	s.clients = append(s.clients, ws)
	s.mu.Unlock()
	s.readers.Go(func() { drainJoins(ws, &s.joins[i]) })
	msg, _ := json.Marshal(map[string]string{"type": "join", "room": fmt.Sprint("room-", i%stormRooms)})
	ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
		return fmt.Errorf("join %d: %w", i, err)
	}
	return nil
}

var joinType = []byte(`"type":"join"`)

// drainJoins reads ws until it is closed, counting join messages in joins: the
// type comes within the first bytes of a message (after its id).
func drainJoins(ws *websocket.Conn, joins *atomic.Int32) {
	var head [96]byte
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		n, err := io.ReadFull(r, head[:])
		if bytes.Contains(head[:n], joinType) {
			joins.Add(1)
		}
		if err == nil {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
		} else if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return
		}
	}
}

// close closes the clients, shuts the handler down and stops the hub and
// the door, each wait bounded (a stuck one is reported, and its goroutine
// left to waitGoroutines).
func (s *stormServer) close(b *testing.B) {
	b.Helper()
	s.mu.Lock()
	for _, ws := range s.clients {
		ws.Close()
	}
	s.mu.Unlock()
	stormAwait(b, "client readers", func() { s.readers.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), stormWait)
	defer cancel()
	if err := s.h.Shutdown(ctx); err != nil {
		b.Errorf("Shutdown: %v", err)
	}
	s.cancel()
	stormAwait(b, "Serve", func() { <-s.served })
	stormAwait(b, "hub.Run", func() { <-s.ran })
}

// stormAwait runs f, failing the benchmark (without stopping it: close may
// run while a failed op unwinds) if it takes longer than stormWait.
func stormAwait(b *testing.B, what string, f func()) {
	b.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(stormWait):
		b.Errorf("%s did not return in %v", what, stormWait)
	}
}

// waitGoroutines fails if more goroutines than base are left after 10 s.
func waitGoroutines(b *testing.B, base int) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			b.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
