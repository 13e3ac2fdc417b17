package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/broadcast"
	"github.com/realtimehub/realtime/internal/redistest"
)

// BenchmarkPartitionTraffic measures what the partition scheme costs in
// traffic: four pods share a Redis; each has members in some of the rooms;
// one message is published to every room. received/needed is how many
// envelopes a pod takes from Redis per envelope it has a member for (1.0
// would be exact per-room subscriptions), subs/pod how many subscriptions a
// pod holds. Layouts: "random" (3 members per room on random pods, as when a
// load balancer spreads users), "pinned" (every room on one pod, as when
// routing is by room). Run with -benchtime 1x.
func BenchmarkPartitionTraffic(b *testing.B) {
	srv := redistest.Start(b)
	const pods, rooms = 4, 2000
	for _, layout := range []string{"random", "pinned"} {
		for _, parts := range []int{16, 64, 256} {
			b.Run(fmt.Sprintf("layout=%s/partitions=%d", layout, parts), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				has := make([]map[string]bool, pods)
				for p := range has {
					has[p] = map[string]bool{}
				}
				for r := range rooms {
					name := fmt.Sprint("room-", r)
					if layout == "pinned" {
						has[r%pods][name] = true
						continue
					}
					for range 3 {
						has[rng.IntN(pods)][name] = true
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				buses := make([]*broadcast.Bus, pods)
				got := make([]atomic.Int64, pods)
				done := make(chan struct{}, pods)
				for p := range buses {
					buses[p] = broadcast.New(redisClient(b, srv.Addr, false), fmt.Sprint("pod", p), broadcast.Options{Partitions: parts},
						func(bool, []byte) { got[p].Add(1) })
					for room := range has[p] {
						buses[p].Watch(room)
					}
					go func() { buses[p].Run(ctx); done <- struct{}{} }()
				}
				require.Eventually(b, func() bool {
					for p := range buses {
						for room := range has[p] {
							if !buses[p].Listening(room) {
								return false
							}
						}
					}
					return true
				}, 20*time.Second, 20*time.Millisecond)
				b.ResetTimer()
				for r := range rooms {
					require.NoError(b, buses[0].Publish(ctx, fmt.Sprint("room-", r), []byte("x")))
				}
				needed, subs := 0, 0
				for p := range has {
					needed += len(has[p])
					subs += buses[p].Stats().Partitions
				}
				require.Eventually(b, func() bool { // all that is needed has arrived
					n := int64(0)
					for p := range got {
						n += got[p].Load()
					}
					return n >= int64(needed)
				}, 10*time.Second, 10*time.Millisecond)
				time.Sleep(200 * time.Millisecond) // and whatever else was coming
				var received int64
				for p := range got {
					received += got[p].Load()
				}
				b.ReportMetric(float64(received)/float64(needed), "received/needed")
				b.ReportMetric(float64(subs)/pods, "subs/pod")
				b.ReportMetric(float64(needed)/pods, "rooms/pod")
				cancel()
				for range pods {
					<-done
				}
			})
		}
	}
}
