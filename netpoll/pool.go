package netpoll

import (
	"sync"
)

// Task is work a Pool runs. Implemented by the caller's connection type, so
// submitting one allocates nothing. Run gets the running worker's scratch
// buffers, valid only during the call.
//
// Concurrency: each Submit runs Run once, on some worker; a Task submitted
// again while queued or running would run twice at once, so the caller
// submits it only when it is idle (ours keeps a scheduled flag).
type Task interface{ Run(*Scratch) }

// Scratch is a worker's own buffers, reused by every task it runs, so that
// reading and writing allocate nothing per connection.
//
// Concurrency: a worker's Scratch is used by one task at a time and must not
// be kept after Run returns.
type Scratch struct {
	// Read is a buffer for one read syscall.
	Read []byte
	// IOV holds the buffers of one writev.
	IOV [][]byte
}

// ReadBufferSize is the size of Scratch.Read.
const ReadBufferSize = 32 << 10

// Pool runs Tasks on a fixed number of goroutines, started by NewPool and
// stopped by Close. The queue is unbounded, but callers submit a connection
// at most once until it runs (they keep a "scheduled" flag), so it holds at
// most one entry per connection. All methods may be called concurrently.
type Pool struct {
	mu     sync.Mutex
	cond   sync.Cond
	queue  []Task // queue[head:] are waiting
	head   int
	closed bool
	wg     sync.WaitGroup
}

// NewPool starts a pool of n workers (n < 1 means 1).
func NewPool(n int) *Pool {
	p := &Pool{}
	p.cond.L = &p.mu
	for range max(n, 1) {
		p.wg.Go(p.work)
	}
	return p
}

// Submit queues t. It reports false, and drops t, once the pool is closed.
func (p *Pool) Submit(t Task) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.queue = append(p.queue, t)
	p.mu.Unlock()
	p.cond.Signal()
	return true
}

func (p *Pool) next() (Task, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.head == len(p.queue) {
		if p.closed {
			return nil, false
		}
		p.cond.Wait()
	}
	t := p.queue[p.head]
	p.queue[p.head] = nil
	p.head++
	if p.head == len(p.queue) { // drained: reuse the slice from the start
		p.queue, p.head = p.queue[:0], 0
		if cap(p.queue) > 4096 {
			p.queue = nil // give back memory after a burst
		}
	}
	return t, true
}

func (p *Pool) work() {
	s := &Scratch{Read: make([]byte, ReadBufferSize), IOV: make([][]byte, 0, MaxIOV)}
	for {
		t, ok := p.next()
		if !ok {
			return
		}
		t.Run(s)
	}
}

// Close runs what is queued, then stops the workers and waits for them.
// Later Submits return false.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
