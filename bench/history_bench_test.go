package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// historyPod is a hub and its Redis broadcaster, running, with one member in
// each of rooms (made by member).
type historyPod struct {
	hub *realtime.ShardedHub
	rb  *realtime.RedisBroadcaster
}

func startHistoryPod(b *testing.B, name, addr string, rooms []string, member func(id string) realtime.Connection, opts ...realtime.BroadcasterOption) historyPod {
	logger := slog.New(slog.DiscardHandler)
	hub := realtime.NewHub(logger)
	rb := realtime.NewRedisBroadcaster(redisClientDelay(b, addr, false, 20*time.Microsecond), hub, logger, append(opts, realtime.WithPodID(name))...)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { hub.Run(ctx) })
	wg.Go(func() { rb.Run(ctx) })
	b.Cleanup(func() { cancel(); wg.Wait() })
	for i, room := range rooms {
		c := member(fmt.Sprintf("%s.%d", name, i))
		hub.Register(c)
		hub.JoinRoom(c, room)
	}
	require.Eventually(b, func() bool { // listening, and (with history) each room read once: in step
		for _, r := range rooms {
			if !rb.Listening(r) {
				return false
			}
		}
		st := rb.Stats()
		return rb.Ready() == nil && (st.HistoryRooms == 0 || st.HistorySyncs >= uint64(len(rooms)))
	}, 10*time.Second, 10*time.Millisecond)
	return historyPod{hub: hub, rb: rb}
}

func historyModes() []struct {
	name string
	opts []realtime.BroadcasterOption
} {
	return []struct {
		name string
		opts []realtime.BroadcasterOption
	}{{"history=off", []realtime.BroadcasterOption{realtime.WithHistory(-1, 0)}}, {"history=on", nil}}
}

// BenchmarkHistoryPublish: what one pod sends through Redis per second when
// rooms keep history (a script appends to the room's stream and publishes)
// and when they do not (SPUBLISH alone), the way the handler's publish
// pipeline does it: 16 lanes, each relaying batches of 32 messages to 100
// rooms the pod has a member in. Same redis-server, same run; msgs/s is the
// figure.
func BenchmarkHistoryPublish(b *testing.B) {
	benchHistoryPublish(b, redistest.Start(b).Addr)
}

func benchHistoryPublish(b *testing.B, addr string) {
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = "room-" + strconv.Itoa(i)
	}
	for _, mode := range historyModes() {
		b.Run(mode.name, func(b *testing.B) {
			p := startHistoryPod(b, "a", addr, rooms, newFrameConn, mode.opts...)
			keep := len(mode.opts) == 0
			const batch, lanes = 32, 16
			byLane := make([][]string, lanes) // a lane carries the rooms that hash to it, as the pipeline's do
			for _, r := range rooms {
				byLane[xxhash.Sum64String(r)%lanes] = append(byLane[xxhash.Sum64String(r)%lanes], r)
			}
			var n, lane atomic.Int64
			b.SetParallelism(lanes / 2) // 16 lanes on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				mine := byLane[lane.Add(1)%lanes]
				frames := make([]*realtime.Frame, batch)
				errs := make([]error, batch)
				for pb.Next() {
					for k := range frames {
						i := n.Add(1)
						f, err := realtime.NewFrame(&realtime.Message{ID: strconv.FormatInt(i, 10), Type: "chat", Room: mine[i%int64(len(mine))],
							From: "a.1", Data: []byte(`{"text":"hello, everyone in the room"}`), Timestamp: time.Unix(0, i)})
						require.NoError(b, err)
						frames[k] = f
					}
					if !keep { // the handler delivers to the pod's members before it relays
						for _, f := range frames {
							p.hub.BroadcastFrame(f.Message().Room, f)
						}
					}
					p.rb.Relay(context.Background(), frames, errs) // with history, Relay delivers here once placed
					for _, err := range errs {
						if err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// latencyConn records, for each frame it gets, the time since the "t" (Unix
// ns) in the message's data.
type latencyConn struct {
	id  string
	got chan time.Duration
}

func (c *latencyConn) ID() string                    { return c.id }
func (c *latencyConn) UserID() string                { return "" }
func (c *latencyConn) Close()                        {}
func (c *latencyConn) Send(m *realtime.Message) bool { return false }
func (c *latencyConn) SendFrame(f *realtime.Frame) bool {
	p := f.Payload()
	i := bytes.Index(p, []byte(`"t":`))
	if i < 0 {
		return true
	}
	end := bytes.IndexByte(p[i+4:], '}')
	sent, err := strconv.ParseInt(string(p[i+4:i+4+end]), 10, 64)
	if err == nil {
		select {
		case c.got <- time.Duration(time.Now().UnixNano() - sent):
		default:
		}
	}
	return true
}

// BenchmarkHistoryCrossPodLatency: pod A publishes 10,000 messages a second
// for two seconds to 100 rooms, each with a member on pod B, a process of
// its own (podB), which records the time from publish to its member's
// queue; with history (the default) and without, same redis-server.
// Messages go to Redis the way the handler sends them: through 16 lanes by
// room, each relaying what has queued up as one batch (relayLanes). Run it
// with -benchtime 1x.
func BenchmarkHistoryCrossPodLatency(b *testing.B) {
	srv := redistest.Start(b)
	const rate, seconds = 10_000, 2
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = "room-" + strconv.Itoa(i)
	}
	for _, mode := range historyModes() {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				send := startHistoryPod(b, "a", srv.Addr, nil, newFrameConn, mode.opts...)
				wait := podB(b, srv.Addr, rooms, len(mode.opts) == 0)
				lanes, errs, stop := relayLanes(send.rb)
				b.ResetTimer()
				start := time.Now()
				for i := range rate * seconds {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
					room := rooms[i%len(rooms)]
					f, err := realtime.NewFrame(&realtime.Message{Type: "chat", Room: room, From: "a.1",
						Data: []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`), Timestamp: time.Now()})
					require.NoError(b, err)
					lanes[xxhash.Sum64String(room)%uint64(len(lanes))] <- f
				}
				stop()
				time.Sleep(time.Second) // the last ones arrive
				b.StopTimer()
				reportLatencies(b, wait(), rate*seconds)
				b.ReportMetric(float64(errs.Load()), "publish-errors")
			}
		})
	}
}

// relayLanes starts 16 lanes that relay frames through rb as the handler's
// publish pipeline does: each takes what has queued (up to 128) and sends it
// as one batch. stop closes the lanes and waits for them.
func relayLanes(rb *realtime.RedisBroadcaster) (lanes []chan *realtime.Frame, errs *atomic.Int64, stop func()) {
	errs = new(atomic.Int64)
	var wg sync.WaitGroup
	lanes = make([]chan *realtime.Frame, 16)
	for i := range lanes {
		q := make(chan *realtime.Frame, 512)
		lanes[i] = q
		wg.Go(func() {
			batch := make([]*realtime.Frame, 0, 128)
			errsOut := make([]error, 128)
			for f := range q {
				batch = append(batch[:0], f)
			more:
				for len(batch) < 128 {
					select {
					case g, ok := <-q:
						if !ok {
							break more
						}
						batch = append(batch, g)
					default:
						break more
					}
				}
				rb.Relay(context.Background(), batch, errsOut[:len(batch)])
				for _, err := range errsOut[:len(batch)] {
					if err != nil {
						errs.Add(1)
					}
				}
			}
		})
	}
	return lanes, errs, func() {
		for _, q := range lanes {
			close(q)
		}
		wg.Wait()
	}
}
