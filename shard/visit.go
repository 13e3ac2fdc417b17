package shard

import (
	"sync"
	"sync/atomic"
)

// Visit is called for each connection a fan-out reaches. It runs with a
// shard or stripe read-locked, possibly on several goroutines at once, so it
// must be safe for concurrent use, must not block, and must not call the
// registry's mutating methods. It reports whether the connection took the
// delivery.
type Visit[C any] func(c C) bool

// Counts is what a fan-out did: how many connections it visited and how many
// of those took the delivery.
//
// It is a plain value.
type Counts struct {
	Visited, Delivered int
}

// minStripesPerWorker is how many full stripes each extra goroutine of a
// fan-out must have to itself. Below about 8,000 members a room's
// connections stay in the CPU caches, and splitting the visit across cores
// only makes cache lines travel between them: measured here, 10,000 members
// cost 16 ns per delivery on one goroutine and 25 ns on two, while 100,000
// members (memory-bound) cost 35 ns on one and 22 ns on two.
const minStripesPerWorker = 8

// EachInRoom calls fn for every member of the room name, using up to workers
// goroutines (the caller's included) when the room has several stripes.
// Each member present for the whole call is visited exactly once; members
// that join or leave meanwhile may or may not be.
func (r *Registry[C]) EachInRoom(name string, workers int, fn Visit[C]) Counts {
	sh := r.roomShard(name)
	sh.mu.RLock()
	var stripes []*stripe[C]
	if rm := sh.byKey[name]; rm != nil {
		stripes = rm.stripes // append-only while the room lives: a safe snapshot
	}
	sh.mu.RUnlock()
	workers = min(workers, len(stripes)/minStripesPerWorker)
	return parallel(len(stripes), workers, func(i int) Counts {
		st := stripes[i]
		st.mu.RLock()
		c := visitSlots(st.members, fn)
		st.mu.RUnlock()
		return c
	})
}

// EachConn calls fn for every registered connection, using up to workers
// goroutines (the caller's included).
func (r *Registry[C]) EachConn(workers int, fn Visit[C]) Counts {
	workers = min(workers, r.Len()/(minStripesPerWorker*r.stripeSize))
	return parallel(len(r.conns), workers, func(i int) Counts {
		sh := &r.conns[i]
		sh.mu.RLock()
		c := visitAll(sh.list, fn)
		sh.mu.RUnlock()
		return c
	})
}

func visitAll[C any](members []*entry[C], fn Visit[C]) Counts {
	var delivered int
	for _, e := range members {
		if fn(e.conn) {
			delivered++
		}
	}
	return Counts{Visited: len(members), Delivered: delivered}
}

func visitSlots[C any](members []slot[C], fn Visit[C]) Counts {
	var delivered int
	for i := range members {
		if fn(members[i].conn) {
			delivered++
		}
	}
	return Counts{Visited: len(members), Delivered: delivered}
}

// parallel runs task(0..n-1), on up to workers goroutines when n > 1, and
// sums what the tasks return. Goroutines are started per call (at most
// workers-1 of them, whatever n is), so the cost per call does not grow with
// the number of members.
func parallel(n, workers int, task func(i int) Counts) Counts {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		var total Counts
		for i := 0; i < n; i++ {
			c := task(i)
			total.Visited += c.Visited
			total.Delivered += c.Delivered
		}
		return total
	}
	var next, visited, delivered atomic.Int64
	run := func() {
		var v, d int
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				break
			}
			c := task(i)
			v += c.Visited
			d += c.Delivered
		}
		visited.Add(int64(v))
		delivered.Add(int64(d))
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(run)
	}
	run()
	wg.Wait()
	return Counts{Visited: int(visited.Load()), Delivered: int(delivered.Load())}
}
