package shard

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type conn struct {
	id   string
	gone atomic.Bool // set by the test after Unregister returned
	late atomic.Int64
	got  atomic.Int64
}

func (c *conn) visit() bool {
	if c.gone.Load() {
		c.late.Add(1)
	}
	c.got.Add(1)
	return true
}

func visitor(c *conn) bool { return c.visit() }

func TestOptionsDefaultsAndRounding(t *testing.T) {
	r := New[*conn](Options{})
	assert.Equal(t, DefaultShards(), r.Shards())
	assert.GreaterOrEqual(t, r.Shards(), 16)
	assert.Equal(t, defaultStripeSize, r.StripeSize())

	r = New[*conn](Options{Shards: 100, StripeSize: 7})
	assert.Equal(t, 128, r.Shards(), "rounded up to a power of two")
	assert.Equal(t, 7, r.StripeSize())
}

func TestRegisterUnregister(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	a := &conn{id: "a"}
	require.NoError(t, r.Register("a", a))
	assert.ErrorIs(t, r.Register("a", &conn{id: "a"}), ErrDuplicateID)
	assert.Equal(t, 1, r.Len())

	got, ok := r.Get("a")
	assert.True(t, ok)
	assert.Same(t, a, got)

	_, ok = r.Unregister("nobody")
	assert.False(t, ok)

	got, ok = r.Unregister("a")
	assert.True(t, ok)
	assert.Same(t, a, got)
	assert.Equal(t, 0, r.Len())
	_, ok = r.Get("a")
	assert.False(t, ok)
	_, ok = r.Unregister("a")
	assert.False(t, ok, "second unregister")
}

func TestJoinLeave(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	_, err := r.Join("ghost", "r", 0)
	assert.ErrorIs(t, err, ErrNotRegistered)

	require.NoError(t, r.Register("a", &conn{id: "a"}))
	joined, err := r.Join("a", "r", 0)
	require.NoError(t, err)
	assert.True(t, joined)
	joined, err = r.Join("a", "r", 0)
	require.NoError(t, err)
	assert.False(t, joined, "joining twice is a no-op")
	assert.Equal(t, 1, r.RoomLen("r"))
	assert.Equal(t, 1, r.NumRooms())

	assert.False(t, r.Leave("a", "other"), "leaving a room not joined")
	assert.False(t, r.Leave("ghost", "r"), "leaving as an unknown connection")
	assert.True(t, r.Leave("a", "r"))
	assert.False(t, r.Leave("a", "r"))
	assert.Equal(t, 0, r.RoomLen("r"))
	assert.Equal(t, 0, r.NumRooms(), "a room whose last member left is gone")
	assert.Nil(t, r.Rooms("a"))
}

func TestRoomLimit(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	require.NoError(t, r.Register("a", &conn{id: "a"}))
	for i := range 3 {
		_, err := r.Join("a", fmt.Sprint(i), 3)
		require.NoError(t, err)
	}
	_, err := r.Join("a", "x", 3)
	assert.ErrorIs(t, err, ErrTooManyRooms)
	joined, err := r.Join("a", "1", 3)
	assert.NoError(t, err, "rejoining a room already joined is not over the limit")
	assert.False(t, joined)
	rooms := r.Rooms("a")
	sort.Strings(rooms)
	assert.Equal(t, []string{"0", "1", "2"}, rooms)
}

func TestUnregisterLeavesEveryRoom(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	require.NoError(t, r.Register("a", &conn{id: "a"}))
	require.NoError(t, r.Register("b", &conn{id: "b"}))
	for _, room := range []string{"x", "y", "z"} {
		_, err := r.Join("a", room, 0)
		require.NoError(t, err)
	}
	_, err := r.Join("b", "x", 0)
	require.NoError(t, err)

	r.Unregister("a")
	assert.Equal(t, 1, r.RoomLen("x"))
	assert.Equal(t, 0, r.RoomLen("y"))
	assert.Equal(t, 0, r.RoomLen("z"))
	assert.Equal(t, 1, r.NumRooms())
	_, err = r.Join("a", "x", 0)
	assert.ErrorIs(t, err, ErrNotRegistered)
}

// A room bigger than one stripe is split, every member is visited exactly
// once whatever the number of workers, and leaves in the middle of stripes
// keep the index consistent.
func TestStripedRoomVisitsEachMemberOnce(t *testing.T) {
	const n = 1000
	r := New[*conn](Options{Shards: 8, StripeSize: 64})
	conns := make([]*conn, n)
	for i := range conns {
		conns[i] = &conn{id: fmt.Sprint("c", i)}
		require.NoError(t, r.Register(conns[i].id, conns[i]))
		_, err := r.Join(conns[i].id, "big", 0)
		require.NoError(t, err)
	}
	assert.Equal(t, (n+63)/64, r.RoomStripes("big"))

	for _, workers := range []int{1, 2, 8} {
		c := r.EachInRoom("big", workers, visitor)
		assert.Equal(t, Counts{Visited: n, Delivered: n}, c, "workers=%d", workers)
	}
	for _, c := range conns {
		assert.EqualValues(t, 3, c.got.Load())
	}

	// Remove every third member, then rejoin a few: holes are refilled.
	left := 0
	for i := 0; i < n; i += 3 {
		assert.True(t, r.Leave(conns[i].id, "big"))
		left++
	}
	assert.Equal(t, n-left, r.RoomLen("big"))
	stripes := r.RoomStripes("big")
	for i := 0; i < 30; i += 3 {
		_, err := r.Join(conns[i].id, "big", 0)
		require.NoError(t, err)
	}
	assert.Equal(t, stripes, r.RoomStripes("big"), "rejoins fill free slots before adding stripes")
	c := r.EachInRoom("big", 2, visitor)
	assert.Equal(t, n-left+10, c.Visited)

	// Everybody leaves: the room is gone.
	for _, c := range conns {
		r.Leave(c.id, "big")
	}
	assert.Equal(t, 0, r.RoomLen("big"))
	assert.Equal(t, 0, r.NumRooms())
	assert.Equal(t, Counts{}, r.EachInRoom("big", 2, visitor))
}

func TestEachConnAndDo(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	for i := range 100 {
		require.NoError(t, r.Register(fmt.Sprint(i), &conn{}))
	}
	for i := 0; i < 100; i += 2 {
		r.Unregister(fmt.Sprint(i))
	}
	assert.Equal(t, Counts{Visited: 50, Delivered: 50}, r.EachConn(2, visitor))
	refuse := func(*conn) bool { return false }
	assert.Equal(t, Counts{Visited: 50, Delivered: 0}, r.EachConn(1, refuse))
	assert.True(t, r.Do("1", visitor))
	assert.False(t, r.Do("0", visitor), "unregistered")
	assert.False(t, r.Do("1", refuse), "fn's answer is returned")
}

// Concurrent register, join, leave, visit and unregister, checked under
// -race: exact final counts, and nothing visited after its Unregister
// returned.
func TestConcurrentChurn(t *testing.T) {
	r := New[*conn](Options{Shards: 8, StripeSize: 16})
	const workers, perWorker = 8, 300
	rooms := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var visitors sync.WaitGroup
	for range 3 {
		visitors.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r.EachInRoom(rooms[i%len(rooms)], 2, visitor)
				r.EachConn(2, visitor)
			}
		})
	}
	kept := make([][]*conn, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWorker {
				c := &conn{id: fmt.Sprintf("w%d-%d", w, i)}
				require.NoError(t, r.Register(c.id, c))
				for _, room := range rooms {
					if rng.IntN(2) == 0 {
						_, err := r.Join(c.id, room, 0)
						require.NoError(t, err)
					}
				}
				r.Leave(c.id, rooms[rng.IntN(len(rooms))])
				r.Do(c.id, visitor)
				if i%2 == 0 {
					_, ok := r.Unregister(c.id)
					require.True(t, ok)
					c.gone.Store(true)
				} else {
					kept[w] = append(kept[w], c)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	visitors.Wait()

	assert.Equal(t, workers*perWorker/2, r.Len())
	total := 0
	for _, room := range rooms {
		total += r.RoomLen(room)
		assert.Equal(t, r.RoomLen(room), r.EachInRoom(room, 1, func(c *conn) bool { return !c.gone.Load() }).Delivered)
	}
	want := 0
	for _, ks := range kept {
		for _, c := range ks {
			want += len(r.Rooms(c.id))
		}
	}
	assert.Equal(t, want, total, "room sizes match the connections' own room lists")
	for _, room := range rooms {
		r.EachInRoom(room, 1, func(c *conn) bool { assert.False(t, c.gone.Load()); return true })
	}
	r.EachConn(1, func(c *conn) bool { assert.Zero(t, c.late.Load(), c.id); return true })
}

// Re-registering an ID while the old entry is still leaving its rooms must
// not let the old entry remove the new one's memberships.
func TestReRegisterSameIDKeepsNewMemberships(t *testing.T) {
	r := New[*conn](Options{Shards: 4})
	rooms := []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"}
	require.NoError(t, r.Register("x", &conn{}))
	for i := range 300 {
		for _, room := range rooms {
			_, err := r.Join("x", room, 0)
			require.NoError(t, err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { r.Unregister("x") })
		wg.Go(func() {
			for r.Register("x", &conn{}) != nil { // until the old one is out of the map
			}
			for _, room := range rooms {
				_, err := r.Join("x", room, 0)
				require.NoError(t, err)
			}
		})
		wg.Wait()
		for _, room := range rooms {
			require.Equal(t, 1, r.RoomLen(room), "iteration %d room %s", i, room)
		}
		require.Len(t, r.Rooms("x"), len(rooms))
	}
}
