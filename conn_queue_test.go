package realtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A flush takes a queue from the pool and gives it back once written, for
// every recipient of a fan-out: neither may allocate, nor may a queue that
// grew for a backlog. A queue comes back empty, whatever it held.
func TestSendQueuesRecycleWithoutAllocating(t *testing.T) {
	frame := []byte("frame")
	cycle := func(frames int) func() {
		return func() {
			q := getQueue()
			for range frames {
				if len(q) == cap(q) {
					q = growQueue(q)
				}
				q = append(q, frame)
			}
			clear(q)
			putQueue(q[:0])
		}
	}
	for _, n := range []int{1, 8, 9, 100} {
		cycle(n)() // the pools hold a queue of each class it needs
		if allocs := testing.AllocsPerRun(100, cycle(n)); !raceEnabled {
			assert.Zero(t, allocs, "%d frames", n)
		}
	}
	q := getQueue()
	assert.Zero(t, len(q))
	assert.Equal(t, 1<<minQueueClass, cap(q))
	for _, b := range q[:cap(q)] {
		assert.Nil(t, b, "a recycled queue holds no frame")
	}
}
