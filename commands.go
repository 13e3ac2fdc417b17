package realtime

import (
	"runtime"
	"sync"
)

// commandRunner runs client commands off the socket workers when the
// handler has hooks that may wait (AuthorizeJoin, AuthorizePublish): a hook
// that calls a database must not hold a worker that reads and writes other
// clients' sockets. Each connection's commands run one at a time, in the
// order they arrived; different connections' commands run in parallel on a
// bounded set of goroutines. A connection may have at most
// maxPendingCommands waiting; past that, its next command is refused with
// rate_limited.
//
// Without such hooks, commands run on the worker that read them (nothing in
// them waits), and the handler has no commandRunner.
//
// All methods may be called concurrently.
type commandRunner struct {
	h *Handler

	mu      sync.Mutex
	cond    *sync.Cond
	pending map[*conn][][]byte // commands waiting, per connection
	ready   []*conn            // connections with commands and no runner
	stopped bool
	wg      sync.WaitGroup
}

// maxPendingCommands bounds the commands one connection may have waiting.
const maxPendingCommands = 64

// commandGoroutines is how many commands may run (and wait on hooks) at once.
func commandGoroutines() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

func newCommandRunner(h *Handler) *commandRunner {
	r := &commandRunner{h: h, pending: map[*conn][][]byte{}}
	r.cond = sync.NewCond(&r.mu)
	for range commandGoroutines() {
		r.wg.Go(r.loop)
	}
	return r
}

// submit queues a copy of payload as c's next command; false if c has too
// many waiting or the runner is stopped.
func (r *commandRunner) submit(c *conn, payload []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	q, busy := r.pending[c]
	if r.stopped || len(q) >= maxPendingCommands {
		return false
	}
	r.pending[c] = append(q, append([]byte(nil), payload...))
	if !busy {
		r.ready = append(r.ready, c)
		r.cond.Signal()
	}
	return true
}

// loop runs connections' commands until the runner stops.
func (r *commandRunner) loop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.ready) == 0 && !r.stopped {
			r.cond.Wait()
		}
		if len(r.ready) == 0 {
			return
		}
		c := r.ready[0]
		r.ready[0] = nil
		r.ready = r.ready[1:]
		r.drain(c)
	}
}

// drain runs c's commands until none is left (r.mu held, released while a
// command runs). c stays in pending while it runs, so submit does not hand
// it to a second goroutine.
func (r *commandRunner) drain(c *conn) {
	for {
		q := r.pending[c]
		if len(q) == 0 {
			delete(r.pending, c)
			return
		}
		cmd := q[0]
		q[0] = nil
		r.pending[c] = q[1:]
		r.mu.Unlock()
		if c.state.Load() == stateOpen {
			r.h.handleCommand(c, cmd)
		}
		r.mu.Lock()
	}
}

// stop lets the commands already queued run and ends the goroutines.
func (r *commandRunner) stop() {
	r.mu.Lock()
	r.stopped = true
	r.cond.Broadcast()
	r.mu.Unlock()
	r.wg.Wait()
}
