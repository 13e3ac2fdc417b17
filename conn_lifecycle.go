package realtime

import (
	"net"
	"strconv"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// A connection's life: attach turns an upgraded socket into a registered
// connection (either door calls it), detach undoes it once the socket is
// released. In between, conn_read.go, conn_write.go and conn_poll.go (or
// conn_goroutine.go) drive it.

// attach turns an upgraded socket into a registered connection. early holds
// bytes the client sent right behind its handshake (its first frames);
// preface, the handshake's response not yet written (the raw door's 101),
// which then leaves in one write with the greeting.
func (h *Handler) attach(nc net.Conn, id *Identity, early, preface []byte) {
	h.attachSocket(nc, -1, id, early, preface)
}

// attachSocket is attach of either nc or, when fd >= 0, a bare descriptor
// the raw door accepted (nc nil), which the connection then owns.
func (h *Handler) attachSocket(nc net.Conn, fd int, id *Identity, early, preface []byte) {
	if h.eng.stopping.Load() {
		closeStopping(nc, fd, preface)
		return
	}
	h.eng.start()
	if h.eng.pool == nil { // Shutdown came first and the engine will never run
		closeStopping(nc, fd, preface)
		return
	}
	if fd >= 0 && h.eng.poller == nil { // no epoll after all: a goroutine drives it
		var err error
		if nc, err = fdConn(fd); err != nil {
			h.logger.Error("realtime: adopt socket", "err", err)
			return
		}
		fd = -1
	}
	if h.eng.beforeRegister != nil {
		h.eng.beforeRegister()
	}
	c := h.newConn(id)
	if fd >= 0 {
		c.fd = int32(fd)
	} else {
		c.adopt(nc)
	}
	// Until the socket is registered, the connection is "scheduled" so that
	// nothing runs its task: frames queued meanwhile wait in pend.
	c.scheduled.Store(true)
	c.queuePreface(preface)
	h.eng.live.Add(1)
	h.eng.hb.add(c)
	h.stats.accepted.Add(1)
	h.hub.Register(c)
	h.arrived(c)
	if len(early) > 0 {
		c.onBytes(early)
	}
	if c.fd >= 0 {
		c.startPolling()
		return
	}
	c.startGoroutine()
}

// closeStopping closes a socket upgraded while the handler shuts down as
// the drain closes connections: 1001 with a reconnect hint, after the raw
// door's held 101 (without them the client saw its socket closed with no
// answer at all, and no hint when to come back).
func closeStopping(nc net.Conn, fd int, preface []byte) {
	bye := wsframe.AppendFrame(preface, wsframe.OpClose, wsframe.ClosePayload(wsframe.CloseGoingAway, reconnectHint()))
	if fd >= 0 {
		writeAndClose(fd, bye)
		return
	}
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(bye)
	nc.Close()
}

// queuePreface puts the handshake's response (the raw door's 101) first in
// the queue of a polled connection, to leave in one write with what follows
// (startPolling writes it); it takes no room in the queue's bounds. A
// connection that cannot be polled gets it at once: its writer must not
// start before the connection is registered.
func (c *conn) queuePreface(preface []byte) {
	if len(preface) == 0 {
		return
	}
	if c.fd < 0 {
		c.nc.Write(preface)
		return
	}
	c.mu.Lock()
	c.queue = append(getQueue(), preface)
	c.flushing = true
	c.mu.Unlock()
	c.pend.Or(workFlush)
}

// newConn returns a connection with a fresh ID, "<pod>.<handler>-<n>": the
// ID names the pod that owns it, and <handler>, drawn at random for each
// Handler, keeps a pod restarted with a fixed PodID from giving a new
// connection the ID of an old one (a direct message to the old one would
// reach it).
func (h *Handler) newConn(id *Identity) *conn {
	c := &conn{
		id:    h.connIDs + strconv.FormatUint(h.connSeq.Add(1), 36),
		h:     h,
		fd:    -1,
		hbPos: -1,
	}
	if id != nil && id != anonymous {
		c.ident.Store(id)
	}
	c.rd.MaxMessageSize = h.cfg.MaxMessageSize
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// adopt takes the socket: a duplicate of its descriptor when it can be
// polled (the net.Conn is closed, so no net.Conn is kept), else the net.Conn
// itself.
func (c *conn) adopt(nc net.Conn) {
	if c.h.eng.poller != nil {
		if fd, err := dupFD(nc); err == nil {
			c.fd = int32(fd)
			nc.Close() // the duplicate keeps the socket open
			return
		}
	}
	c.nc = nc
}

// arrived records c's user as online and greets the client.
func (h *Handler) arrived(c *conn) {
	h.userArrived(c)
	h.watchExpiry(c)
	h.sendConnected(c)
}

// startPolling registers the owned descriptor with epoll and lets the
// connection's task run.
func (c *conn) startPolling() {
	eng := c.h.eng
	// Record the interest before registering: if the client's first frame is
	// already waiting, the event fires at once and onPoll must be the one to
	// clear armed. Stored after Add, it could overwrite that clear, and the
	// task would then never re-arm the descriptor: the socket would go unread
	// until the ping timeout closed it.
	c.armed.Store(armRead)
	if err := eng.poller.Add(int(c.fd), c.onPoll); err != nil {
		c.h.logger.Error("realtime: poll", "conn", c.id, "err", err)
		c.teardown(err)
		return
	}
	if eng.afterRegister != nil {
		eng.afterRegister()
	}
	// What attach queued (the raw door's 101, the greeting, the replies to
	// early frames) is written here, while this goroutine still holds the
	// task: through the pool it would wait behind every other connection's
	// work, and the client cannot go on before it has its 101.
	if c.pend.And(^workFlush)&workFlush != 0 {
		iov := getQueue() // the flush's scratch, pooled as send queues are
		blocked, err := c.flush(iov)
		clear(iov[:cap(iov)])
		putQueue(iov[:0])
		if err != nil {
			c.teardown(err)
			return
		}
		if blocked {
			c.pend.Or(workFlush) // the task waits for EPOLLOUT
		}
	}
	c.scheduled.Store(false)
	if c.pend.Load() != 0 {
		c.schedule()
	}
}

// startGoroutine starts the reader goroutine of a connection that cannot be
// polled. Frames queued before it (the greeting, replies to early bytes)
// already started their writer: kick does for such a connection, and a
// second writer here would write them twice.
func (c *conn) startGoroutine() {
	c.scheduled.Store(false)
	c.h.eng.fallback.Add(1)
	go c.readLoop()
}

// detach undoes attach after the socket is released: unregister, leave
// events, presence.
func (h *Handler) detach(c *conn, cause error) {
	mu := h.memberLock(c)
	mu.Lock() // a join running on the command pool lands before this, or sees c closed
	rooms := h.rooms.Rooms(c)
	h.hub.Unregister(c)
	if h.own != nil {
		h.own.forget(c)
	}
	mu.Unlock()
	h.eng.hb.remove(c)
	for _, room := range rooms {
		if h.announce(room, MessageTypeLeave) {
			h.deliverEvent(c, MessageTypeLeave, room)
		}
		h.recordMember(room, c, -1)
	}
	h.forgetExpiry(c)
	h.userLeft(c, rooms) // offline, later, unless the user comes back
	h.stats.closed.Add(1)
	c.mu.Lock()
	kind := c.closeKind
	c.mu.Unlock()
	h.stats.labels.closes[kind].Add(1)
	if cause != nil && !isPeerGone(cause) {
		h.logger.Debug("realtime: connection ended", "conn", c.id, "err", cause)
	}
	if h.eng.live.Add(-1) == 0 {
		h.eng.signalIdle()
	}
}
