package realtime

import (
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
	id    string
	ident atomic.Pointer[Identity] // nil: anonymous
	h     *Handler
	nc    net.Conn // fallback transport, or nil
	// nextOfUser links the connections of one user on this handler (the
	// handler's user index, guarded by its shard's lock).
	nextOfUser *conn

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
	qbytes      int32      // bytes queued, with queueEntryOverhead per frame
	inflight    int32      // queue[:inflight] are in the writev in progress
	flushing    bool       // a flush is scheduled, running, or waiting for the socket
	sockFull    bool       // the last write found the socket buffer full
	closeQueued bool       // our close frame is queued: nothing may follow it
	closeSent   bool       // our close frame is written
	peerClosed  bool       // the peer's close frame arrived
	closeKind   closeKind  // who closed first and why, for the counters
	queue       [][]byte   // frames waiting to be written (nil while idle)

	// Only the writer touches writeBlocked and scratch; only the reader the rest.
	writeBlocked bool
	readStopped  bool
	scratch      *netpoll.Scratch // the running task's buffers (polled), else nil
	rd           wsframe.Reader
	limiter      rateLimiter

	hbBucket, hbPos int32 // place in the heartbeat wheel, guarded by its bucket
	expPos          int32 // 1 + place in the expiry heap, 0: none; guarded by the handler's expiry lock
}

var (
	_ FrameSender  = (*conn)(nil)
	_ netpoll.Task = (*conn)(nil)
)

// ID returns the connection's ID: the handler's pod ID, a dot, and a counter.
func (c *conn) ID() string { return c.id }

// UserID returns the user ID authentication gave, or "" for anonymous.
func (c *conn) UserID() string {
	if id := c.ident.Load(); id != nil {
		return id.UserID
	}
	return ""
}

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
func (c *conn) SendFrame(f *Frame) bool { return c.enqueue(f.wire) }

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
	c.mu.Lock()
	if c.closeQueued || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return
	}
	kick := c.queueCloseLocked(code, reason, false)
	c.mu.Unlock()
	c.closeQueuedThen(code, reason, linger, kick)
}

// queueCloseLocked queues the close frame (c.mu held, no close queued yet),
// after the backlog or, with drop, in its place. It reports whether the
// writer must be started.
func (c *conn) queueCloseLocked(code uint16, reason string, drop bool) (kick bool) {
	var payload []byte
	if code != wsframe.CloseNoStatus {
		payload = wsframe.ClosePayload(code, reason)
	}
	if drop {
		c.dropBacklogLocked()
	}
	c.closeQueued = true
	if c.closeKind == closeGone && !c.peerClosed {
		c.closeKind = classifyClose(code, reason)
	}
	c.state.CompareAndSwap(stateOpen, stateClosing)
	return c.pushLocked(wsframe.AppendFrame(nil, wsframe.OpClose, payload))
}

// closeQueuedThen does what follows a queued close frame: the log line, the
// deadline after which the socket is released, the writer.
func (c *conn) closeQueuedThen(code uint16, reason string, linger time.Duration, kick bool) {
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

// closeDone reports whether the close handshake is complete: both sides sent
// their close frame.
func (c *conn) closeDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeSent && c.peerClosed
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
	c.queue, c.qbytes = nil, 0
	c.mu.Unlock()
	if c.fd >= 0 {
		// Polled: teardown runs in the task that reads, so the reader's
		// buffers can go now. A goroutine connection's reader may still be
		// in Feed; it stops when the closed socket fails its next Read.
		c.rd = wsframe.Reader{}
	}
	c.h.detach(c, cause)
}

// requestTeardown asks the connection's serialized context to tear down.
func (c *conn) requestTeardown() { c.kick(workTeardown) }
