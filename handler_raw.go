package realtime

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gobwas/ws"
)

// Serve accepts raw TCP connections from ln and upgrades them without
// net/http (gobwas/ws zero-copy upgrade), under HandshakeTimeout. It returns
// ErrHandlerClosed after Shutdown, or the listener's error. It closes ln
// when it returns.
func (h *Handler) Serve(ln net.Listener) error {
	h.lnMu.Lock()
	if h.eng.stopping.Load() {
		h.lnMu.Unlock()
		ln.Close()
		return ErrHandlerClosed
	}
	h.listeners[ln] = struct{}{}
	h.lnMu.Unlock()
	defer func() {
		h.lnMu.Lock()
		delete(h.listeners, ln)
		h.lnMu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if h.eng.stopping.Load() {
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
		backoff = 0
		h.eng.handshakes.Add(1)
		go h.serveRaw(nc)
	}
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
type recorder struct {
	net.Conn
	buf []byte
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
	n, err := r.Conn.Read(p)
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
	if !h.trackHandshake(nc) {
		nc.Close() // shutting down
		return
	}
	defer h.untrackHandshake(nc)
	rec := &recorder{Conn: nc}
	req := &http.Request{Method: http.MethodGet, Header: http.Header{}, RemoteAddr: nc.RemoteAddr().String()}
	var uri string
	var id *Identity
	var tryLater bool                // turned away by admission control, but a browser
	refused := http.StatusBadRequest // the status a failed upgrade was refused with
	u := ws.Upgrader{
		OnRequest: func(b []byte) error { uri = string(b); return nil },
		OnHost:    func(b []byte) error { req.Host = string(b); return nil },
		OnHeader: func(k, v []byte) error {
			req.Header.Add(string(k), string(v))
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if h.eng.stopping.Load() {
				refused = http.StatusServiceUnavailable
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable), ws.RejectionReason("server shutting down"))
			}
			if !h.gate.allow(time.Now()) {
				h.stats.throttled.Add(1)
				if req.Header.Get("Origin") != "" { // a browser: upgrade, then 1013
					tryLater = true
					return nil, nil
				}
				refused = http.StatusServiceUnavailable
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
					ws.RejectionReason("too many connections at once; retry later"),
					ws.RejectionHeader(ws.HandshakeHeaderHTTP(http.Header{"Retry-After": {retryAfter()}})))
			}
			var err error
			if req.URL, err = url.ParseRequestURI(uri); err != nil {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("bad request URI"))
			}
			req.RequestURI = uri
			var status int
			id, status, err = h.admit(req)
			if err != nil {
				refused = status
				return nil, ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(err.Error()))
			}
			return nil, nil
		},
	}
	if _, err := u.Upgrade(rec); err != nil {
		if len(rec.buf) > MaxHandshakeBytes {
			refused = http.StatusRequestHeaderFieldsTooLarge
		}
		h.reject(refused) // counted before the client can read the refusal, as the HTTP door does
		rec.flushOut()
		h.logger.Debug("realtime: raw upgrade failed", "remote", req.RemoteAddr, "err", err)
		if len(rec.buf) > MaxHandshakeBytes {
			nc.Write([]byte(tooLarge))
		}
		nc.Close()
		return
	}
	if tryLater {
		rec.flushOut()
		sendTryLater(nc)
		return
	}
	nc.SetDeadline(time.Time{})
	var early []byte
	if i := bytes.Index(rec.buf, crlf2); i >= 0 && i+4 < len(rec.buf) {
		early = rec.buf[i+4:]
	}
	h.attach(nc, id, early, rec.out) // the 101 leaves with the greeting
}
