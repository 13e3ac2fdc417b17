package realtime

import (
	"errors"
	"math/bits"
	"net"
	"sync"
	"time"
	"unsafe"

	"github.com/realtimehub/realtime/internal/wsframe"
	"github.com/realtimehub/realtime/netpoll"
)

// The write side of a connection: a bounded queue of frames and one writer
// at a time that sends all of them in one writev.

// queueEntryOverhead is what one queued frame costs besides its bytes (its
// slice header in the queue, and allocation rounding), so that the bound in
// bytes also bounds memory when the frames are tiny.
const queueEntryOverhead = 32

// enqueue queues a frame. The queue is bounded in bytes
// (HandlerConfig.SendQueueBytes, and SendQueueSize frames if set): a
// connection over it is a slow consumer and is closed, its backlog dropped
// so that the close frame goes out next. A frame bigger than the bound is
// taken when the queue is empty. A pong replaces a pong still waiting at the
// end of the queue (RFC 6455 §5.5.3: answering the latest ping is enough),
// so a ping flood costs one queued pong, not one per ping.
func (c *conn) enqueue(b []byte) bool {
	c.mu.Lock()
	if c.closeQueued || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return false
	}
	if isPong(b) && c.replacePongLocked(b) {
		c.mu.Unlock()
		return true
	}
	if c.overLocked(len(b)) {
		c.overflowLocked() // unlocks
		return false
	}
	kick := c.pushLocked(b)
	c.mu.Unlock()
	if kick {
		c.kick(workFlush)
	}
	return true
}

// enqueueEvents queues, under one lock and for one write, the frames of
// batch that c is to hear, as it would have heard them one by one: the
// events while it was a member (its own joins and leaves in batch tell
// when), but its own (pendingEvent.from). It reports false if the
// connection is closing or its queue overflowed (it is then closed as a
// slow consumer, as enqueue does).
func (c *conn) enqueueEvents(batch []pendingEvent) bool {
	member := true // c's own first event tells whether it was a member before the batch
	for _, e := range batch {
		if e.from == c {
			member = !e.join
			break
		}
	}
	c.mu.Lock()
	if c.closeQueued || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return false
	}
	kick := false
	for _, e := range batch {
		if e.from == c {
			member = e.join // from here on a member or not
			continue
		}
		if !member {
			continue
		}
		if c.overLocked(len(e.f.wire)) {
			c.overflowLocked() // unlocks
			if kick {
				c.kick(workFlush)
			}
			return false
		}
		kick = c.pushLocked(e.f.wire) || kick
	}
	c.mu.Unlock()
	if kick {
		c.kick(workFlush)
	}
	return true
}

// overflowLocked closes a connection whose queue would pass its bound (a
// slow consumer): its backlog is dropped and the close frame queued. It
// unlocks c.mu.
func (c *conn) overflowLocked() {
	c.h.stats.slowConsumers.Add(1)
	kick := c.queueCloseLocked(wsframe.ClosePolicyViolation, "slow consumer: send queue full", true)
	c.mu.Unlock()
	c.closeQueuedThen(wsframe.ClosePolicyViolation, "slow consumer", errorLinger, kick)
}

// overLocked reports whether queueing n more bytes passes the bounds.
func (c *conn) overLocked(n int) bool {
	queued := len(c.queue)
	if queued > 0 && isPreface(c.queue[0]) {
		queued-- // the 101 waiting for the first write is not in the bounds
	}
	if queued == 0 {
		return false
	}
	cfg := &c.h.cfg
	return int(c.qbytes)+n+queueEntryOverhead > cfg.SendQueueBytes ||
		cfg.SendQueueSize > 0 && queued >= cfg.SendQueueSize
}

// isPreface reports whether b is a handshake response queued before the
// connection's first frame (attach): it starts "HTTP/", which no frame we
// write does (0x48 would be a close frame with RSV1 set).
func isPreface(b []byte) bool { return len(b) > 0 && b[0] == 'H' }

func isPong(b []byte) bool { return len(b) > 0 && b[0] == 0x80|wsframe.OpPong }

// replacePongLocked puts pong in place of a pong waiting, untouched, at the
// end of the queue, and reports whether it did.
func (c *conn) replacePongLocked(pong []byte) bool {
	n := len(c.queue)
	if n == 0 || !isPong(c.queue[n-1]) || n-1 < int(c.inflight) || n == 1 && c.off > 0 {
		return false // none, or being written
	}
	c.qbytes += int32(len(pong) - len(c.queue[n-1]))
	c.queue[n-1] = pong
	return true
}

// pushLocked appends a frame to the queue (c.mu held) and reports whether
// the caller must start the writer: true when no flush was pending.
func (c *conn) pushLocked(b []byte) (kick bool) {
	if c.queue == nil {
		c.queue = getQueue()
	} else if len(c.queue) == cap(c.queue) {
		c.queue = growQueue(c.queue)
	}
	c.queue = append(c.queue, b)
	c.qbytes += int32(len(b) + queueEntryOverhead)
	kick = !c.flushing
	c.flushing = true
	return kick
}

// dropBacklogLocked empties the queue but for the frames the writer is
// writing, a frame already partly written, whose rest must follow for the
// stream to stay well-formed, and a handshake response not yet written.
func (c *conn) dropBacklogLocked() {
	keep := int(c.inflight) // being written now: the writer accounts for them
	if c.off > 0 || len(c.queue) > 0 && isPreface(c.queue[0]) {
		keep = max(keep, 1) // the rest of a frame begun, or the 101 before any frame
	}
	clear(c.queue[keep:])
	c.queue = c.queue[:keep]
	c.qbytes = 0
	for _, b := range c.queue {
		if !isPreface(b) {
			c.qbytes += int32(len(b) + queueEntryOverhead)
		}
	}
}

// flush writes queued frames until the queue is empty or the socket is full
// (blocked). iov is the writer's scratch. Only one flush runs at a time.
func (c *conn) flush(iov [][]byte) (blocked bool, err error) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.flushing = false
			putQueue(c.queue)
			c.queue, c.off, c.qbytes = nil, 0, 0
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
		c.inflight = int32(len(iov)) // queue[:inflight] must stay as they are
		c.mu.Unlock()

		n, err := c.writev(iov)
		if errors.Is(err, netpoll.ErrWouldBlock) {
			c.mu.Lock()
			c.sockFull, c.inflight = true, 0
			c.mu.Unlock()
			return true, nil
		}
		if err != nil {
			return false, err
		}
		c.h.stats.writes.Add(1)
		written := uint64(n)

		c.mu.Lock()
		c.sockFull, c.inflight = false, 0
		n += int(c.off)
		i := 0
		for i < len(c.queue) && n >= len(c.queue[i]) {
			n -= len(c.queue[i])
			i++
		}
		frames := uint64(i)
		for _, b := range c.queue[:i] {
			if isPreface(b) { // the handshake's response: not a frame, not in the bounds
				frames--
				written -= min(written, uint64(len(b)))
				continue
			}
			c.qbytes -= int32(len(b) + queueEntryOverhead)
		}
		c.h.stats.bytesOut.Add(written)
		c.h.stats.framesOut.Add(frames) // last: a reader that sees the frames sees their bytes and write
		rest := copy(c.queue, c.queue[i:])
		clear(c.queue[rest:])
		c.queue, c.off = c.queue[:rest], int32(n)
		c.mu.Unlock()
	}
}

// flushBacklog writes queued frames in the middle of reading when the queue
// holds half of what it may. One read can carry hundreds of commands whose replies (or the
// client's own room messages) would otherwise all queue before the task gets
// to write. Only the polled task does it: it is the connection's writer.
func (c *conn) flushBacklog() {
	if c.scratch == nil || c.writeBlocked {
		return
	}
	c.mu.Lock()
	backlog := int(c.qbytes) >= c.h.cfg.SendQueueBytes/2 ||
		c.h.cfg.SendQueueSize > 0 && len(c.queue) >= c.h.cfg.SendQueueSize/2
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

// Send queues are pooled by size class (8 to 1,024 frames, powers of two),
// each pool holding a queue's first element's address: a pointer goes into
// an interface without an allocation, where a slice header (or a pointer to
// one, taken per Put) would cost one per flush, i.e. per recipient of a
// fan-out. A connection holds no queue while idle and a busy one allocates
// none per flush.
const (
	minQueueClass = 3  // 8 frames
	maxQueueClass = 10 // 1,024 frames
)

var queuePools [maxQueueClass - minQueueClass + 1]sync.Pool

func getQueue() [][]byte { return getQueueOf(minQueueClass) }

// getQueueOf returns an empty queue of 1<<class frames.
func getQueueOf(class int) [][]byte {
	if p, ok := queuePools[class-minQueueClass].Get().(*[]byte); ok {
		return unsafe.Slice(p, 1<<class)[:0]
	}
	return make([][]byte, 0, 1<<class)
}

// growQueue returns a full queue's frames in one of twice its size, and
// recycles q. Past the largest class append grows it.
func growQueue(q [][]byte) [][]byte {
	class := bits.Len(uint(cap(q))) // the power of two above cap
	if class < minQueueClass || class > maxQueueClass {
		return q
	}
	bigger := append(getQueueOf(class), q...)
	clear(q)
	putQueue(q[:0])
	return bigger
}

// putQueue recycles q, which must be empty (its frames cleared).
func putQueue(q [][]byte) {
	class := bits.Len(uint(cap(q))) - 1 // the largest power of two within cap
	if class < minQueueClass || class > maxQueueClass {
		return
	}
	queuePools[class-minQueueClass].Put(unsafe.SliceData(q[:1]))
}
