package realtime

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
	"github.com/realtimehub/realtime/netpoll"
)

// The write side of a connection: a bounded queue of frames and one writer
// at a time that sends all of them in one writev.

// burstFactor is how far a connection's queue may grow past SendQueueSize
// while its socket still takes data.
const burstFactor = 4

// controlSlack is how many control frames (pongs, pings) may go beyond the
// send queue's size before the connection counts as a slow consumer.
const controlSlack = 8

func (c *conn) enqueue(b []byte, control bool) bool {
	c.mu.Lock()
	if c.closeQueued || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return false
	}
	// A full queue means a slow consumer only if the socket is backed up too:
	// otherwise the frames merely wait for the writer (a burst fanned in
	// faster than one flush), up to a hard cap that bounds memory.
	limit := c.h.cfg.SendQueueSize
	if !c.sockFull {
		limit *= burstFactor
	}
	if control {
		limit += controlSlack
	}
	if len(c.queue) >= limit {
		c.mu.Unlock()
		c.h.stats.slowConsumers.Add(1)
		c.fail(wsframe.ClosePolicyViolation, "slow consumer: send queue full")
		return false
	}
	kick := c.pushLocked(b)
	c.mu.Unlock()
	if kick {
		c.kick(workFlush)
	}
	return true
}

// pushLocked appends a frame to the queue (c.mu held) and reports whether
// the caller must start the writer: true when no flush was pending.
func (c *conn) pushLocked(b []byte) (kick bool) {
	if c.queue == nil {
		c.queue = getQueue()
	}
	c.queue = append(c.queue, b)
	kick = !c.flushing
	c.flushing = true
	return kick
}

// flush writes queued frames until the queue is empty or the socket is full
// (blocked). iov is the writer's scratch. Only one flush runs at a time.
func (c *conn) flush(iov [][]byte) (blocked bool, err error) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.flushing = false
			putQueue(c.queue)
			c.queue, c.off = nil, 0
			justSent := c.closeQueued && !c.closeSent
			c.closeSent = c.closeSent || c.closeQueued
			c.mu.Unlock()
			if justSent {
				c.shutdownWrite() // FIN after the close frame
			}
			return false, nil
		}
		iov = append(iov[:0], c.queue[0][c.off:])
		for _, b := range c.queue[1:min(len(c.queue), netpoll.MaxIOV)] {
			iov = append(iov, b)
		}
		c.mu.Unlock()

		n, err := c.writev(iov)
		if errors.Is(err, netpoll.ErrWouldBlock) {
			c.mu.Lock()
			c.sockFull = true
			c.mu.Unlock()
			return true, nil
		}
		if err != nil {
			return false, err
		}
		c.h.stats.bytesOut.Add(uint64(n))

		c.mu.Lock()
		c.sockFull = false
		n += int(c.off)
		i := 0
		for i < len(c.queue) && n >= len(c.queue[i]) {
			n -= len(c.queue[i])
			i++
		}
		c.h.stats.framesOut.Add(uint64(i))
		rest := copy(c.queue, c.queue[i:])
		clear(c.queue[rest:])
		c.queue, c.off = c.queue[:rest], int32(n)
		c.mu.Unlock()
	}
}

// flushBacklog writes queued frames in the middle of reading when the queue
// is half full. One read can carry hundreds of commands whose replies (or the
// client's own room messages) would otherwise all queue before the task gets
// to write. Only the polled task does it: it is the connection's writer.
func (c *conn) flushBacklog() {
	if c.scratch == nil || c.writeBlocked {
		return
	}
	c.mu.Lock()
	backlog := len(c.queue) >= c.h.cfg.SendQueueSize/2
	c.mu.Unlock()
	if !backlog {
		return
	}
	blocked, err := c.flush(c.scratch.IOV)
	if err != nil {
		c.requestTeardown() // the task sees it after this read
		return
	}
	c.writeBlocked = blocked
}

func (c *conn) writev(iov [][]byte) (int, error) {
	if c.fd >= 0 {
		return netpoll.Writev(int(c.fd), iov)
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	bufs := net.Buffers(iov)
	n, err := bufs.WriteTo(c.nc)
	return int(n), err
}

func (c *conn) shutdownWrite() {
	if c.fd >= 0 {
		netpoll.ShutdownWrite(int(c.fd))
		return
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// queuePool recycles send queues, so that a connection holds none while
// idle and a busy one allocates none per flush.
var queuePool = sync.Pool{New: func() any { q := make([][]byte, 0, 16); return &q }}

func getQueue() [][]byte { return (*queuePool.Get().(*[][]byte))[:0] }

func putQueue(q [][]byte) {
	if q == nil || cap(q) > 1024 {
		return
	}
	q = q[:0]
	queuePool.Put(&q)
}
