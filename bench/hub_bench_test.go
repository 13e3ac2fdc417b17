package bench

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
)

// impl is one hub under test and how to make its connections.
type impl struct {
	name    string
	newHub  func() realtime.Hub
	newConn func(id string) realtime.Connection
}

var impls = []impl{
	{
		name:    "sharded",
		newHub:  func() realtime.Hub { return realtime.NewHub(slog.New(slog.DiscardHandler)) },
		newConn: func(id string) realtime.Connection { return newFrameConn(id) },
	},
	{
		name:    "naive",
		newHub:  func() realtime.Hub { return newNaiveHub() },
		newConn: func(id string) realtime.Connection { return newQueueConn(id) },
	},
}

var chatMsg = &realtime.Message{
	ID:   "m-1",
	Type: realtime.MessageTypeChat,
	Room: "room",
	From: "c-1",
	Data: json.RawMessage(`{"text":"hello, everyone in the room"}`),
}

// fill registers n connections and joins them to room.
func fill(h realtime.Hub, im impl, n int, room string) []realtime.Connection {
	conns := make([]realtime.Connection, n)
	for i := range conns {
		conns[i] = im.newConn(fmt.Sprint("c-", i))
		h.Register(conns[i])
		if room != "" {
			h.JoinRoom(conns[i], room)
		}
	}
	return conns
}

// BenchmarkBroadcast: one message to a room of N members, each of which only
// enqueues. ns/delivery is the time per recipient; allocs/op is per message
// and must not grow with N.
func BenchmarkBroadcast(b *testing.B) {
	for _, members := range []int{1_000, 10_000, 100_000} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("members=%d/hub=%s", members, im.name), func(b *testing.B) {
				h := im.newHub()
				conns := fill(h, im, members, "room")
				b.ReportAllocs()
				for b.Loop() {
					h.Broadcast(chatMsg)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(members), "ns/delivery")
				b.StopTimer()
				// Every member got every message (the warm-up run included).
				want := delivered(conns[0])
				require.GreaterOrEqual(b, want, uint64(b.N))
				for _, c := range conns {
					require.Equal(b, want, delivered(c))
				}
			})
		}
	}
}

// BenchmarkJoinLeaveUnderBroadcast: join and leave (one op = both) while
// another goroutine broadcasts to the same rooms without pause. Run with
// -cpu 1,2.
func BenchmarkJoinLeaveUnderBroadcast(b *testing.B) {
	const rooms, perRoom, churners = 100, 100, 10_000
	for _, im := range impls {
		b.Run("hub="+im.name, func(b *testing.B) {
			h := im.newHub()
			for r := range rooms {
				for i := range perRoom {
					c := im.newConn(fmt.Sprintf("m-%d-%d", r, i))
					h.Register(c)
					h.JoinRoom(c, fmt.Sprint("room-", r))
				}
			}
			names := make([]string, rooms)
			msgs := make([]*realtime.Message, rooms)
			for r := range names {
				names[r] = fmt.Sprint("room-", r)
				m := *chatMsg
				m.Room = names[r]
				msgs[r] = &m
			}
			pool := fill(h, im, churners, "")

			stop := make(chan struct{})
			var bg sync.WaitGroup
			bg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					h.Broadcast(msgs[i%rooms])
				}
			})
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				for pb.Next() {
					c := pool[rng.IntN(churners)]
					room := names[rng.IntN(rooms)]
					h.JoinRoom(c, room)
					h.LeaveRoom(c, room)
				}
			})
			b.StopTimer()
			close(stop)
			bg.Wait()
			for _, name := range names {
				require.Equal(b, perRoom, h.RoomCount(name), "churn left the rooms as they were")
			}
		})
	}
}

// BenchmarkSendTo: a direct message by ID among 100,000 connections, from
// parallel senders.
func BenchmarkSendTo(b *testing.B) {
	const n = 100_000
	for _, im := range impls {
		b.Run("hub="+im.name, func(b *testing.B) {
			h := im.newHub()
			conns := fill(h, im, n, "")
			ids := make([]string, n)
			for i, c := range conns {
				ids[i] = c.ID()
			}
			msg := *chatMsg
			msg.Room = ""
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					if !h.SendTo(ids[rng.IntN(n)], &msg) {
						b.Error("SendTo refused")
						return
					}
				}
			})
		})
	}
}
