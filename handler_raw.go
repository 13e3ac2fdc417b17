package realtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/realtimehub/realtime/netpoll"
)

// Serve accepts raw TCP connections from ln and upgrades them without
// net/http (gobwas/ws zero-copy upgrade), under HandshakeTimeout. It returns
// ErrHandlerClosed after Shutdown, or the listener's error. It closes ln
// when it returns.
//
// On Linux a *net.TCPListener's connections are accepted as bare
// descriptors (netpoll.Acceptor), with TCP_DEFER_ACCEPT and TCP_NODELAY set
// on its socket (they stay set): a connection is handed over once its
// request has begun to arrive, or after HandshakeTimeout, and a request head
// that has arrived whole is upgraded from one read. Those sockets get
// TCP_NODELAY, as net's do, but no TCP keep-alive (the heartbeat,
// PingInterval, finds dead peers). Closing ln yourself frees its port at
// once and ends Serve within 100 ms, with an error matching net.ErrClosed.
func (h *Handler) Serve(ln net.Listener) error {
	acc := h.acceptorFor(ln)
	if !h.addListener(ln, acc) {
		return ErrHandlerClosed
	}
	defer h.removeListener(ln, acc)
	var backoff time.Duration
	for {
		err := h.acceptOne(ln, acc)
		if err == nil {
			backoff = 0
			continue
		}
		if h.eng.stopping.Load() || errors.Is(err, ErrHandlerClosed) {
			return ErrHandlerClosed
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			h.logger.Warn("realtime: accept", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		return fmt.Errorf("realtime: accept: %w", err)
	}
}

// acceptorFor returns the Acceptor of a TCP listener, its socket set to
// hand over connections once their request has begun to arrive; nil for
// other listeners (their connections come from their own Accept).
func (h *Handler) acceptorFor(ln net.Listener) *netpoll.Acceptor {
	acc, err := netpoll.NewAcceptor(ln)
	if err != nil {
		return nil
	}
	if err := acc.DeferAccept(h.cfg.HandshakeTimeout); err != nil {
		h.logger.Warn("realtime: TCP_DEFER_ACCEPT", "err", err)
	}
	return acc
}

// addListener records ln (and acc) for Shutdown to close; false, with both
// closed, when Shutdown has begun.
func (h *Handler) addListener(ln net.Listener, acc *netpoll.Acceptor) bool {
	h.lnMu.Lock()
	defer h.lnMu.Unlock()
	if h.eng.stopping.Load() {
		closeListener(ln, acc)
		return false
	}
	h.listeners[ln] = acc
	return true
}

func (h *Handler) removeListener(ln net.Listener, acc *netpoll.Acceptor) {
	h.lnMu.Lock()
	delete(h.listeners, ln)
	h.lnMu.Unlock()
	closeListener(ln, acc)
}

func closeListener(ln net.Listener, acc *netpoll.Acceptor) {
	ln.Close()
	if acc != nil {
		acc.Close()
	}
}

// acceptOne accepts one connection and starts its handshake, counted under
// hsMu after a last look at stopping (enterUpgrade): counted after
// Shutdown's Wait began, it would not be waited for.
func (h *Handler) acceptOne(ln net.Listener, acc *netpoll.Acceptor) error {
	if acc != nil {
		fd, remote, err := acc.Accept()
		if err != nil {
			return err
		}
		if !h.enterUpgrade() {
			netpoll.Close(fd)
			return ErrHandlerClosed
		}
		go h.serveRawFD(fd, remote)
		return nil
	}
	nc, err := ln.Accept()
	if err != nil {
		return err
	}
	if !h.enterUpgrade() {
		nc.Close()
		return ErrHandlerClosed
	}
	go h.serveRaw(nc)
	return nil
}

// trackHandshake records a raw handshake in progress, so that Shutdown can
// cut it short; false once Shutdown has begun.
func (h *Handler) trackHandshake(nc net.Conn) bool {
	h.hsMu.Lock()
	defer h.hsMu.Unlock()
	if h.eng.stopping.Load() {
		return false
	}
	h.handshaking[nc] = struct{}{}
	// The deadline is set here, under hsMu: set after, it could overwrite
	// the "now" of a cancelHandshakes that ran in between.
	nc.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	return true
}

func (h *Handler) untrackHandshake(nc net.Conn) {
	h.hsMu.Lock()
	delete(h.handshaking, nc)
	h.hsMu.Unlock()
}

// cancelHandshakes ends every raw handshake in progress now: a client that
// sent half a request must not hold Shutdown for HandshakeTimeout.
func (h *Handler) cancelHandshakes() {
	h.hsMu.Lock()
	defer h.hsMu.Unlock()
	for nc := range h.handshaking {
		nc.SetDeadline(time.Now())
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// recorder keeps what the upgrader reads, so that bytes the client sent
// right after its handshake (its first frames) are not lost in the
// upgrader's pooled buffer, and holds what it writes (the response), so
// that a 101 goes out in one write with the greeting that follows it.
//
// A recorder without a Conn serves a head read beforehand (pre) and records
// nothing: its caller knows where the head ends.
type recorder struct {
	net.Conn
	pre []byte // read before the upgrader started: served first
	buf []byte // everything served, when there is a Conn
	out []byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.out = append(r.out, p...)
	return len(p), nil
}

// flushOut writes what the upgrader wrote (a refusal, or a 101 followed by
// a close) straight to the socket.
func (r *recorder) flushOut() {
	if len(r.out) > 0 {
		r.Conn.Write(r.out)
		r.out = nil
	}
}

func (r *recorder) Read(p []byte) (int, error) {
	var n int
	var err error
	switch {
	case len(r.pre) > 0:
		n = copy(p, r.pre)
		r.pre = r.pre[n:]
	case r.Conn != nil:
		n, err = r.Conn.Read(p)
	default:
		return 0, io.EOF // a head read whole beforehand ends there
	}
	if r.Conn == nil {
		return n, err
	}
	r.buf = append(r.buf, p[:n]...)
	if len(r.buf) > MaxHandshakeBytes {
		return n, errHandshakeTooLarge
	}
	return n, err
}

// crlf2 ends an HTTP request's head.
var crlf2 = []byte("\r\n\r\n")

// tooLarge answers a handshake past MaxHandshakeBytes, as net/http does.
const tooLarge = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

func (h *Handler) serveRaw(nc net.Conn) {
	defer h.eng.handshakes.Done()
	h.handshakeConn(nc, nil, addrString(nc.RemoteAddr()))
}

// addrString is a's String, or "" for none (net.FileConn leaves a reset
// socket's peer address nil).
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// handshakeConn reads nc's handshake under HandshakeTimeout, pre being what
// was read of it already, and upgrades it or answers the refusal. remote is
// the client's address.
func (h *Handler) handshakeConn(nc net.Conn, pre []byte, remote string) {
	if !h.trackHandshake(nc) {
		nc.Close() // shutting down
		return
	}
	defer h.untrackHandshake(nc)
	rec := &recorder{Conn: nc, pre: pre}
	hs, err := h.upgradeRaw(rec, remote)
	if err != nil {
		rec.flushOut()
		if len(rec.buf) > MaxHandshakeBytes {
			nc.Write([]byte(tooLarge))
		}
		nc.Close()
		return
	}
	if hs.tryLater {
		rec.flushOut()
		sendTryLater(nc)
		return
	}
	nc.SetDeadline(time.Time{})
	var early []byte
	if i := bytes.Index(rec.buf, crlf2); i >= 0 && i+4 < len(rec.buf) {
		early = rec.buf[i+4:]
	}
	h.attach(nc, hs.id, early, rec.out) // the 101 leaves with the greeting
}
