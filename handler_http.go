package realtime

import (
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// ServeHTTP upgrades r to a WebSocket: 403 for a foreign origin, 401 when
// Authenticate refuses, 400 for a request that is not a WebSocket handshake,
// 431 for headers over MaxHandshakeBytes, 503 after Shutdown, and past
// AcceptRate 503 with Retry-After (a browser's request: upgraded, then closed
// with 1013 and a reconnect hint).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.enterUpgrade() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.eng.handshakes.Done()
	if !h.gate.allow(time.Now()) {
		h.stats.throttled.Add(1)
		if r.Header.Get("Origin") != "" { // a browser: it cannot read a 503
			if nc, _, _, err := (ws.HTTPUpgrader{Timeout: h.cfg.HandshakeTimeout}).Upgrade(r, w); nc != nil {
				if err != nil {
					nc.Close()
					return
				}
				sendTryLater(nc)
			}
			return
		}
		w.Header().Set("Retry-After", retryAfter())
		http.Error(w, "too many connections at once; retry later", http.StatusServiceUnavailable)
		return
	}
	if handshakeSize(r) > MaxHandshakeBytes {
		h.reject(http.StatusRequestHeaderFieldsTooLarge)
		http.Error(w, "request header fields too large", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	id, status, err := h.admit(r)
	if err != nil {
		h.reject(status)
		http.Error(w, err.Error(), status)
		return
	}
	u := ws.HTTPUpgrader{Timeout: h.cfg.HandshakeTimeout}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close() // Upgrade returns the hijacked conn even when it fails
		}
		h.reject(http.StatusBadRequest)
		h.logger.Debug("realtime: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	var early []byte
	if rw != nil && rw.Reader.Buffered() > 0 {
		early, _ = rw.Reader.Peek(rw.Reader.Buffered()) // the client's first frames
		early = append([]byte(nil), early...)
	}
	h.attach(nc, id, early, nil)
}

// enterUpgrade counts an HTTP-door upgrade as a handshake in progress, as
// the raw door's are, so that Shutdown waits for it before its drain takes
// the connections (one registered after would be left to ShutdownTimeout,
// without a 1001); false once Shutdown has begun. Under hsMu: Shutdown's
// cancelHandshakes takes it after setting stopping, so an upgrade counted
// here is counted before Shutdown waits.
func (h *Handler) enterUpgrade() bool {
	h.hsMu.Lock()
	defer h.hsMu.Unlock()
	if h.eng.stopping.Load() {
		return false
	}
	h.eng.handshakes.Add(1)
	return true
}

// handshakeSize is about how many bytes r's request line and headers took.
func handshakeSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len(r.Host) + 16
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
