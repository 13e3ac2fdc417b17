package history

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder collects what a log delivers, per room.
type recorder struct {
	mu  sync.Mutex
	got map[string][]uint64
}

func (r *recorder) deliver(room string, v uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]uint64{}
	}
	r.got[room] = append(r.got[room], v)
}

func (r *recorder) of(room string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.got[room]...)
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func appendN(l *Log[uint64], room string, n int) {
	for range n {
		l.Append(room, func(p Position) (uint64, int) { return p.Offset, 10 })
	}
}

func join(t *testing.T, l *Log[uint64], room string, since *Position) View[uint64] {
	t.Helper()
	var v View[uint64]
	require.True(t, l.Join(room, since, func(x View[uint64]) { v = x }))
	return v
}

func TestLeaderOffsetsAndRecovery(t *testing.T) {
	var rec recorder
	l := NewLeader(Options{Size: 5}, rec.deliver)
	v := join(t, l, "r", nil)
	assert.Zero(t, v.Pos.Offset)
	assert.NotEmpty(t, v.Pos.Epoch)
	appendN(l, "r", 8)
	assert.Equal(t, seq(1, 8), rec.of("r"), "delivered in offset order")

	v = join(t, l, "r", &Position{Offset: 5, Epoch: v.Pos.Epoch})
	assert.True(t, v.Recovered)
	assert.Equal(t, seq(6, 8), v.Replay)
	assert.Equal(t, uint64(8), v.Pos.Offset)

	v = join(t, l, "r", &Position{Offset: 8, Epoch: v.Pos.Epoch})
	assert.True(t, v.Recovered, "nothing missed")
	assert.Empty(t, v.Replay)

	v2 := join(t, l, "r", &Position{Offset: 2, Epoch: v.Pos.Epoch})
	assert.False(t, v2.Recovered, "older than the 5 kept")
	assert.Empty(t, v2.Replay)
	v2 = join(t, l, "r", &Position{Offset: 7, Epoch: "other"})
	assert.False(t, v2.Recovered, "another epoch")
	v2 = join(t, l, "r", &Position{Offset: 9, Epoch: v.Pos.Epoch})
	assert.False(t, v2.Recovered, "a position the room never had")
}

func TestLeaderTTLAndSweep(t *testing.T) {
	var rec recorder
	l := NewLeader(Options{TTL: 30 * time.Millisecond, MetaTTL: time.Hour}, rec.deliver)
	appendN(l, "r", 3)
	epoch := join(t, l, "r", nil).Pos.Epoch
	time.Sleep(50 * time.Millisecond)
	v := join(t, l, "r", &Position{Offset: 1, Epoch: epoch})
	assert.False(t, v.Recovered, "expired messages are not replayed")
	v = join(t, l, "r", &Position{Offset: 3, Epoch: epoch})
	assert.True(t, v.Recovered, "the position outlives the messages")
	l.Sweep(time.Now())
	assert.Equal(t, int64(roomOverhead), l.Stats().Bytes, "an idle room keeps no message, only its position")
	assert.Equal(t, 1, l.Stats().Rooms)
	l.Sweep(time.Now().Add(2 * time.Hour))
	assert.Zero(t, l.Stats().Rooms, "and is forgotten after MetaTTL")
	v = join(t, l, "r", &Position{Offset: 3, Epoch: epoch})
	assert.False(t, v.Recovered)
	assert.NotEqual(t, epoch, v.Pos.Epoch, "a forgotten room starts a new epoch")
}

func TestLeaderMaxBytes(t *testing.T) {
	var rec recorder
	l := NewLeader(Options{Size: 100, MaxBytes: 100*(10+entryOverhead) + 50*roomOverhead}, rec.deliver)
	for i := range 50 {
		appendN(l, fmt.Sprint("room", i), 10)
		time.Sleep(time.Millisecond)
	}
	assert.LessOrEqual(t, l.Stats().Bytes, int64(100*(10+entryOverhead)+50*roomOverhead))
	v := join(t, l, "room49", &Position{Offset: 0, Epoch: join(t, l, "room49", nil).Pos.Epoch})
	assert.True(t, v.Recovered, "the newest room keeps its messages")
	v = join(t, l, "room0", &Position{Offset: 0, Epoch: join(t, l, "room0", nil).Pos.Epoch})
	assert.False(t, v.Recovered, "the oldest went first")
}

func TestFollowerOrderDuplicatesAndGaps(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	assert.False(t, l.Accept("r", Position{1, "e"}, 1, 1), "a room not served is ignored")
	assert.True(t, l.Serve("r", true), "a new room needs a sync")
	assert.False(t, l.Join("r", nil, func(View[uint64]) {}), "unknown until synced")
	l.Accept("r", Position{4, "e"}, 4, 1) // held until the sync says where the room is
	l.Sync("r", here(l, "r"), Position{3, "e"}, []Entry[uint64]{{Offset: 3, Value: 3}}, nil, nil)
	assert.Equal(t, []uint64{4}, rec.of("r"))

	assert.False(t, l.Accept("r", Position{5, "e"}, 5, 1))
	assert.False(t, l.Accept("r", Position{5, "e"}, 5, 1), "duplicate dropped")
	assert.True(t, l.Accept("r", Position{7, "e"}, 7, 1), "6 missing: a gap")
	assert.Equal(t, []uint64{4, 5}, rec.of("r"))
	assert.False(t, l.Accept("r", Position{6, "e"}, 6, 1), "the gap closes by itself")
	assert.Equal(t, seq(4, 7), rec.of("r"))

	assert.True(t, l.Accept("r", Position{10, "e"}, 10, 1))
	gap := l.Sync("r", here(l, "r"), Position{10, "e"}, []Entry[uint64]{{Offset: 8, Value: 8}, {Offset: 9, Value: 9}, {Offset: 10, Value: 10}}, nil, nil)
	assert.False(t, gap.Gap, "repaired from the source")
	assert.Equal(t, seq(4, 10), rec.of("r"))

	var holes [][2]uint64
	l.OnHole = func(_ string, from, to uint64) { holes = append(holes, [2]uint64{from, to}) }
	assert.True(t, l.Accept("r", Position{14, "e"}, 14, 1))
	l.Sync("r", here(l, "r"), Position{14, "e"}, []Entry[uint64]{{Offset: 13, Value: 13}, {Offset: 14, Value: 14}}, nil, nil)
	assert.Equal(t, [][2]uint64{{11, 12}}, holes, "what the source trimmed is a hole, reported")
	assert.Equal(t, append(seq(4, 10), 13, 14), rec.of("r"))
	assert.Equal(t, uint64(2), l.Stats().Holes)

	// The source lost everything: a message of a new epoch waits for a
	// read of the source, which starts the room over in it.
	assert.True(t, l.Accept("r", Position{1, "f"}, 101, 1), "another epoch: only the source says which is current")
	l.Sync("r", here(l, "r"), Position{1, "f"}, []Entry[uint64]{{Offset: 1, Value: 101, At: time.Now().UnixNano()}}, nil, nil)
	assert.Equal(t, uint64(101), rec.of("r")[len(rec.of("r"))-1])
	assert.Equal(t, uint64(1), l.Stats().Resets)
}

func TestFollowerJoinFromMemoryAndSync(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{Size: 4}, rec.deliver)
	l.Serve("r", true)
	l.Sync("r", here(l, "r"), Position{0, "e"}, nil, nil, nil)
	for i := uint64(1); i <= 6; i++ {
		l.Accept("r", Position{i, "e"}, i, 1)
	}
	v := join(t, l, "r", &Position{4, "e"})
	assert.Equal(t, []uint64{5, 6}, v.Replay)
	assert.False(t, l.Join("r", &Position{1, "e"}, func(View[uint64]) {}), "not covered here: ask the source")
	var got View[uint64]
	src := []Entry[uint64]{{Offset: 2, Value: 2}, {Offset: 3, Value: 3}, {Offset: 4, Value: 4}, {Offset: 5, Value: 5}, {Offset: 6, Value: 6}}
	l.Sync("r", here(l, "r"), Position{6, "e"}, src, &Position{1, "e"}, func(v View[uint64]) { got = v })
	assert.True(t, got.Recovered)
	assert.Equal(t, seq(2, 6), got.Replay, "the source's older messages and the ring, joined")

	l.Serve("r", false)
	assert.False(t, l.Join("r", nil, func(View[uint64]) {}), "not served: not in step")
	assert.True(t, l.Serve("r", true), "served again: a sync is due")
	assert.False(t, l.Join("r", nil, func(View[uint64]) {}))
	l.Sweep(time.Now().Add(time.Hour))
	assert.Equal(t, 1, l.Stats().Rooms, "a served room stays")
	l.Serve("r", false)
	l.Sweep(time.Now().Add(time.Hour))
	assert.Zero(t, l.Stats().Rooms, "a room no longer served goes after the grace")
}

func TestConcurrentAppendAndJoin(t *testing.T) {
	var rec recorder
	l := NewLeader(Options{Size: 1000}, rec.deliver)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { appendN(l, "r", 200) })
	}
	for range 4 {
		wg.Go(func() {
			for range 50 {
				v := join(t, l, "r", nil)
				_ = v
			}
		})
	}
	wg.Wait()
	assert.Equal(t, seq(1, 800), rec.of("r"))
}

// Messages that arrive before a follower's first sync came after it
// subscribed: they are delivered, with what the source has between them and
// its position, not dropped as old.
func TestFollowerFirstSyncDeliversWhatCameMeanwhile(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	l.Serve("r", true)
	l.Accept("r", Position{6, "e"}, 6, 1)
	l.Accept("r", Position{8, "e"}, 8, 1)
	now := time.Now().UnixNano()
	src := []Entry[uint64]{{Offset: 5, Value: 5, At: now}, {Offset: 6, Value: 6, At: now}, {Offset: 7, Value: 7, At: now}, {Offset: 8, Value: 8, At: now}}
	l.Sync("r", here(l, "r"), Position{8, "e"}, src, nil, nil)
	assert.Equal(t, seq(6, 8), rec.of("r"), "6 and 8 came after subscribing, 7 between them; 5 before")
	var v View[uint64]
	require.True(t, l.Join("r", &Position{4, "e"}, func(x View[uint64]) { v = x }))
	assert.Equal(t, seq(5, 8), v.Replay, "5 is kept for joiners")
}

// here is room's position now, as a caller of Sync reads it before it reads
// the source.
func here(l *Log[uint64], room string) Position {
	pos, _, _ := l.Position(room)
	return pos
}

func ents(from, to uint64) []Entry[uint64] {
	var e []Entry[uint64]
	for i := from; i <= to; i++ {
		e = append(e, Entry[uint64]{Offset: i, Value: i, Size: 1, At: time.Now().UnixNano()})
	}
	return e
}

// Regression (review): a join with since {0, epoch} allocated a slice sized
// by the room's offset (8 bytes × millions), not by what the room keeps.
func TestSinceZeroDoesNotAllocateByOffset(t *testing.T) {
	l := NewLeader[*int](Options{Size: 10}, func(string, *int) {})
	var x int
	for range 200_000 {
		l.Append("r", func(Position) (*int, int) { return &x, 1 })
	}
	var ep string
	l.Join("r", nil, func(v View[*int]) { ep = v.Pos.Epoch })
	allocs := testing.AllocsPerRun(10, func() {
		l.Join("r", &Position{Offset: 0, Epoch: ep}, func(v View[*int]) { assert.False(t, v.Recovered) })
	})
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	l.Join("r", &Position{Offset: 199_995, Epoch: ep}, func(v View[*int]) { assert.Len(t, v.Replay, 5) })
	runtime.ReadMemStats(&m1)
	assert.Less(t, m1.TotalAlloc-m0.TotalAlloc, uint64(4096), "the replay is sized by what is kept")
	assert.LessOrEqual(t, allocs, 1.0)
}

// Regression (review): a held message at offset 0 (a malformed envelope)
// made the first Sync set the position to MaxUint64.
func TestOffsetZeroIsRefused(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	l.Serve("r", true)
	l.Accept("r", Position{Offset: 0, Epoch: "E"}, 0, 1)
	l.Sync("r", here(l, "r"), Position{Offset: 3, Epoch: "E"}, ents(1, 3), nil, nil)
	l.Accept("r", Position{Offset: 4, Epoch: "E"}, 4, 1)
	assert.Equal(t, []uint64{4}, rec.of("r"))
	assert.False(t, l.Accept("r", Position{Offset: 4 + 2<<20, Epoch: "E"}, 9, 1), "far ahead: dropped, not held")
	assert.Equal(t, uint64(1), l.Stats().Dropped)
}

// Regression (review): one message of another epoch reset the room, and
// the next read of the source delivered its history again.
func TestForeignEpochDoesNotReplay(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	l.Serve("r", true)
	l.Sync("r", here(l, "r"), Position{Offset: 0, Epoch: "B"}, nil, nil, nil)
	for i := uint64(1); i <= 5; i++ {
		l.Accept("r", Position{Offset: i, Epoch: "B"}, i, 1)
	}
	assert.True(t, l.Accept("r", Position{Offset: 50, Epoch: "A"}, 999, 1), "a late copy from another epoch asks for a read")
	l.Sync("r", here(l, "r"), Position{Offset: 5, Epoch: "B"}, ents(1, 5), nil, nil)
	assert.Equal(t, seq(1, 5), rec.of("r"), "each message once")
}

// Regression (review): a read taken before the room moved to a new epoch,
// applied after, moved it back.
func TestLateReadDoesNotMoveEpochBack(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	l.Serve("r", true)
	l.Sync("r", here(l, "r"), Position{Offset: 2, Epoch: "A"}, ents(1, 2), nil, nil)
	before := here(l, "r") // a read starts now…
	l.Sync("r", here(l, "r"), Position{Offset: 1, Epoch: "B"}, []Entry[uint64]{{Offset: 1, Value: 101, At: time.Now().UnixNano()}}, nil, nil)
	res := l.Sync("r", before, Position{Offset: 2, Epoch: "A"}, ents(1, 2), nil, nil) // …and lands late
	assert.True(t, res.Stale)
	l.Accept("r", Position{Offset: 2, Epoch: "B"}, 102, 1)
	assert.Equal(t, []uint64{101, 102}, rec.of("r"))
}

// A source behind what was delivered, in the same epoch, is reported.
func TestRegressionReported(t *testing.T) {
	var rec recorder
	l := NewFollower(Options{}, rec.deliver)
	l.Serve("r", true)
	l.Sync("r", here(l, "r"), Position{Offset: 5, Epoch: "A"}, ents(1, 5), nil, nil)
	res := l.Sync("r", here(l, "r"), Position{Offset: 3, Epoch: "A"}, ents(1, 3), nil, nil)
	assert.True(t, res.Regressed)
	assert.Equal(t, uint64(1), l.Stats().Regressions)
}

// Regression (review): joins of rooms that never had a message kept a
// position each, outside the byte bound. Positions count in MaxBytes now.
func TestPositionsCountInMaxBytes(t *testing.T) {
	l := NewLeader[*int](Options{MaxBytes: 1 << 20}, func(string, *int) {})
	for i := range 50_000 {
		l.Join(fmt.Sprint("room-", i), nil, func(View[*int]) {})
	}
	assert.LessOrEqual(t, l.Stats().Bytes, int64(1<<20))
	assert.LessOrEqual(t, l.Stats().Rooms, (1<<20)/roomOverhead, "idle positions were forgotten")
}
