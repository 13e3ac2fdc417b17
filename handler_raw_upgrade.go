package realtime

import (
	"net/http"
	"net/url"
	"time"

	"github.com/gobwas/ws"
)

// rawHandshake is one raw-door upgrade in progress: the request as the
// upgrader parses it (for the admission hooks) and how it ended. It belongs
// to the goroutine doing the handshake.
type rawHandshake struct {
	h        *Handler
	req      *http.Request
	uri      string
	id       *Identity
	tryLater bool // turned away by admission control, but a browser: upgrade, then 1013
	refused  int  // the status a failed upgrade was refused with
}

func (h *Handler) newRawHandshake(remote string) *rawHandshake {
	return &rawHandshake{
		h:       h,
		req:     &http.Request{Method: http.MethodGet, Header: http.Header{}, RemoteAddr: remote},
		refused: http.StatusBadRequest,
	}
}

// upgradeRaw runs the raw door's upgrade over rec for the client at remote.
// A refusal is counted (before the client can read it, as the HTTP door
// does) and logged; writing it, from rec.out, is the caller's.
func (h *Handler) upgradeRaw(rec *recorder, remote string) (*rawHandshake, error) {
	hs := h.newRawHandshake(remote)
	u := hs.upgrader()
	_, err := u.Upgrade(rec)
	if err != nil {
		if len(rec.buf) > MaxHandshakeBytes {
			hs.refused = http.StatusRequestHeaderFieldsTooLarge
		}
		h.reject(hs.refused)
		h.logger.Debug("realtime: raw upgrade failed", "remote", remote, "err", err)
	}
	return hs, err
}

// upgrader is a gobwas upgrader that fills hs as it parses.
func (hs *rawHandshake) upgrader() ws.Upgrader {
	return ws.Upgrader{
		OnRequest: func(b []byte) error { hs.uri = string(b); return nil },
		OnHost:    func(b []byte) error { hs.req.Host = string(b); return nil },
		OnHeader: func(k, v []byte) error {
			hs.req.Header.Add(string(k), string(v))
			return nil
		},
		OnBeforeUpgrade: hs.beforeUpgrade,
	}
}

// beforeUpgrade decides, once the head is parsed: shutting down (503),
// admission control (503 with Retry-After, or 1013 after the upgrade for a
// browser), a bad URI (400), then the handler's authentication and origin
// check.
func (hs *rawHandshake) beforeUpgrade() (ws.HandshakeHeader, error) {
	h, req := hs.h, hs.req
	if h.eng.stopping.Load() {
		hs.refused = http.StatusServiceUnavailable
		return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable), ws.RejectionReason("server shutting down"))
	}
	if !h.gate.allow(time.Now()) {
		h.stats.throttled.Add(1)
		if req.Header.Get("Origin") != "" { // a browser: upgrade, then 1013
			hs.tryLater = true
			return nil, nil
		}
		hs.refused = http.StatusServiceUnavailable
		return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable),
			ws.RejectionReason("too many connections at once; retry later"),
			ws.RejectionHeader(ws.HandshakeHeaderHTTP(http.Header{"Retry-After": {retryAfter()}})))
	}
	var err error
	if req.URL, err = url.ParseRequestURI(hs.uri); err != nil {
		return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("bad request URI"))
	}
	req.RequestURI = hs.uri
	var status int
	hs.id, status, err = h.admit(req)
	if err != nil {
		hs.refused = status
		return nil, ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(err.Error()))
	}
	return nil, nil
}
