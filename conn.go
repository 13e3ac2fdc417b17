package realtime

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
	"github.com/realtimehub/realtime/netpoll"
)

// Connection states.
const (
	stateOpen    uint32 = iota
	stateClosing        // a close frame is queued; waiting for the flush and the peer
	stateClosed         // torn down: socket released, unregistered
)

// Work bits for a polled connection, done by its task on a pool worker.
const (
	workRead     uint32 = 1 << iota // the socket is readable (or hung up)
	workWrite                       // the socket is writable again
	workFlush                       // frames were queued
	workTeardown                    // release the socket
)

// conn is our Connection: a WebSocket whose socket is either a descriptor
// the server owns, driven by epoll and a worker pool (fd >= 0), or a net.Conn
// driven by one reader goroutine (nc != nil: TLS, non-Linux).
//
// All methods may be called concurrently. Writing is done by one writer at a
// time (the connection's task, or its flush goroutine for nc); reading by
// one reader at a time; the socket is released only by the same serialized
// context that reads and writes it, so a descriptor number is never reused
// under a running syscall.
type conn struct {
	id, userID string
	h          *Handler
	nc         net.Conn // fallback transport, or nil

	lastRead atomic.Int64 // unix nanoseconds of the last bytes read
	fd       int32        // owned descriptor, or -1
	state    atomic.Uint32

	// Polled connections: pending work, whether a task is queued or
	// running, and the interest currently armed in epoll (0 once it fired).
	pend      atomic.Uint32
	armed     atomic.Uint32
	scheduled atomic.Bool

	mu          sync.Mutex // guards the write side below
	off         int32      // bytes of queue[0] already written
	flushing    bool       // a flush is scheduled, running, or waiting for the socket
	sockFull    bool       // the last write found the socket buffer full
	closeQueued bool       // our close frame is queued: nothing may follow it
	closeSent   bool       // our close frame is written
	peerClosed  bool       // the peer's close frame arrived
	queue       [][]byte   // frames waiting to be written (nil while idle)

	// Only the writer touches writeBlocked and scratch; only the reader the rest.
	writeBlocked bool
	readStopped  bool
	scratch      *netpoll.Scratch // the running task's buffers (polled), else nil
	rd           wsframe.Reader
	limiter      rateLimiter

	hbBucket, hbPos int32 // place in the heartbeat wheel, guarded by its bucket
}

var (
	_ FrameSender  = (*conn)(nil)
	_ netpoll.Task = (*conn)(nil)
)

// ID returns the connection's ID: the handler's pod ID, a dot, and a counter.
func (c *conn) ID() string { return c.id }

// UserID returns the user ID Authenticate gave, or "" for anonymous.
func (c *conn) UserID() string { return c.userID }

// Send encodes msg and queues it. It returns false if the connection is
// closing or its queue is full (the connection is then closed as a slow
// consumer).
func (c *conn) Send(msg *Message) bool {
	f, err := NewFrame(msg)
	if err != nil {
		c.h.logger.Error("realtime: send", "conn", c.id, "err", err)
		return false
	}
	return c.SendFrame(f)
}

// SendFrame queues an encoded frame; see Send.
func (c *conn) SendFrame(f *Frame) bool { return c.enqueue(f.wire, false) }

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

// Close closes the connection gracefully: a close frame (1000, or 1001 while
// the handler shuts down) goes after what is queued, then the socket is
// released when the peer answers or after HandlerConfig.CloseTimeout.
func (c *conn) Close() {
	if c.h.eng.stopping.Load() {
		c.fail(wsframe.CloseGoingAway, "server shutting down")
		return
	}
	c.closeWith(wsframe.CloseNormal, "", c.h.cfg.CloseTimeout)
}

// fail closes the connection for a reason of the server's (an error, a
// timeout, shutdown): the peer gets the close frame but is not waited for
// beyond errorLinger.
func (c *conn) fail(code uint16, reason string) {
	c.closeWith(code, reason, min(c.h.cfg.CloseTimeout, errorLinger))
}

// errorLinger is how long a connection the server fails stays open after its
// close frame was queued, so that the frame reaches the peer before the FIN.
const errorLinger = time.Second

// closeWith queues a close frame with code and reason, unless one is queued
// already, and releases the socket when both sides have sent theirs or after
// linger. CloseNoStatus sends an empty close frame (the echo of one).
func (c *conn) closeWith(code uint16, reason string, linger time.Duration) {
	var payload []byte
	if code != wsframe.CloseNoStatus {
		payload = wsframe.ClosePayload(code, reason)
	}
	frame := wsframe.AppendFrame(nil, wsframe.OpClose, payload)
	c.mu.Lock()
	if c.closeQueued || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return
	}
	c.closeQueued = true
	c.state.CompareAndSwap(stateOpen, stateClosing)
	kick := c.pushLocked(frame)
	c.mu.Unlock()
	if code != wsframe.CloseNormal && code != wsframe.CloseNoStatus && code != wsframe.CloseGoingAway {
		c.h.logger.Debug("realtime: closing connection", "conn", c.id, "code", code, "reason", reason)
	}
	c.h.eng.hb.closing(c, time.Now().Add(linger))
	if kick {
		c.kick(workFlush)
	}
}

// kick asks for work on the connection's serialized context.
func (c *conn) kick(work uint32) {
	if c.nc != nil {
		switch {
		case work&workTeardown != 0:
			c.teardown(nil)
		case work&workFlush != 0:
			go c.flushBlocking()
		}
		return
	}
	c.pend.Or(work)
	c.schedule()
}

func (c *conn) schedule() {
	if c.scheduled.CompareAndSwap(false, true) {
		if !c.h.eng.pool.Submit(c) {
			c.scheduled.Store(false) // pool closed: shutdown tears down what is left
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

// closeDone reports whether the close handshake is complete: both sides sent
// their close frame.
func (c *conn) closeDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeSent && c.peerClosed
}

// onBytes feeds bytes read from the socket to the frame reader.
func (c *conn) onBytes(p []byte) {
	c.lastRead.Store(time.Now().UnixNano())
	c.h.stats.bytesIn.Add(uint64(len(p)))
	if c.readStopped {
		return // closing after an error: what follows is not read
	}
	err := c.rd.Feed(p, c.onFrame)
	if err == nil || err == errStopReading {
		if err != nil {
			c.stopReading()
		}
		return
	}
	c.stopReading()
	var ce *wsframe.CloseError
	if errors.As(err, &ce) {
		c.h.stats.protocolErrors.Add(1)
		c.fail(ce.Code, ce.Reason)
		return
	}
	c.fail(wsframe.CloseInternalError, "internal error")
}

func (c *conn) stopReading() {
	c.readStopped = true
	c.rd = wsframe.Reader{} // release buffers
}

// errStopReading ends Feed after the peer's close frame.
var errStopReading = errors.New("stop reading")

var pingFrame = wsframe.AppendFrame(nil, wsframe.OpPing, nil)

// onFrame handles one message or control frame from the peer.
func (c *conn) onFrame(op byte, payload []byte) error {
	switch op {
	case wsframe.OpText:
		c.h.stats.messagesIn.Add(1)
		c.h.handleMessage(c, payload)
		c.flushBacklog()
	case wsframe.OpBinary:
		return &wsframe.CloseError{Code: wsframe.CloseUnsupportedData, Reason: "binary messages are not supported"}
	case wsframe.OpPing:
		c.enqueue(wsframe.AppendFrame(nil, wsframe.OpPong, payload), true)
	case wsframe.OpPong:
		// lastRead is already updated
	case wsframe.OpClose:
		code, _, err := wsframe.ParseClosePayload(payload)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.peerClosed = true
		c.mu.Unlock()
		c.closeWith(code, "", c.h.cfg.CloseTimeout) // echo the code (RFC 6455 §5.5.1); no-op if ours is queued
		return errStopReading
	}
	return nil
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

// teardown releases the socket and removes the connection from everything.
// For a polled connection it runs only in the connection's task.
func (c *conn) teardown(cause error) {
	if c.state.Swap(stateClosed) == stateClosed {
		return
	}
	if c.fd >= 0 {
		c.h.eng.poller.Del(int(c.fd))
		netpoll.Close(int(c.fd))
	} else {
		c.nc.Close()
	}
	c.mu.Lock()
	clear(c.queue)
	putQueue(c.queue)
	c.queue = nil
	c.mu.Unlock()
	c.rd = wsframe.Reader{}
	c.h.detach(c, cause)
}

// requestTeardown asks the connection's serialized context to tear down.
func (c *conn) requestTeardown() { c.kick(workTeardown) }

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
