package realtime

import (
	"context"
	"encoding/json"
	"time"
)

// Token lifecycle: a connection whose Identity has an ExpiresAt is closed
// with CloseUnauthorized at that time, unless the client sent a refresh
// command with a token HandlerConfig.Refresh accepts for the same user.

// MessageTypeRefresh is a client's command carrying a fresh token
// ({"type":"refresh","data":{"token":"…"}}) and the server's answer
// (RefreshData).
const MessageTypeRefresh = "refresh"

// ErrCodeUnauthorized is the error code of a refresh whose token the
// Refresh hook refused.
const ErrCodeUnauthorized = "unauthorized"

// RefreshData is the data of the server's answer to a refresh: the user and
// the new expiry (unix seconds; 0: never). It is a plain value.
type RefreshData struct {
	UserID    string `json:"user_id"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
}

// watchExpiry puts c among the connections that expire (expiry.go), at its
// Identity's expiry, if it has one.
func (h *Handler) watchExpiry(c *conn) {
	at := c.identity().ExpiresAt
	if at.IsZero() {
		return
	}
	x := &h.expiry
	x.mu.Lock()
	defer x.mu.Unlock()
	if c.expPos == 0 {
		// Counted before the state is checked, until c is in the heap: a
		// detach that finds none counted has closed c before this check,
		// which then sees it.
		x.n.Add(1)
		defer x.n.Add(-1)
		if c.state.Load() == stateClosed { // a refresh that ended after the connection
			return
		}
	}
	x.set(c, expiryNanos(at))
	h.rearmExpiry()
}

// expire closes c, which the timer took out of the heap, if its credentials
// are past their expiry (a refresh may have moved it meanwhile).
func (h *Handler) expire(c *conn) {
	switch at := c.identity().ExpiresAt; {
	case at.IsZero(): // refreshed to credentials that do not expire
		return
	case time.Now().Before(at): // refreshed meanwhile
		h.watchExpiry(c)
		return
	}
	h.stats.expired.Add(1)
	c.fail(CloseUnauthorized, "token expired")
}

// forgetExpiry takes c out of the connections that expire; detach calls it,
// after c is closed.
func (h *Handler) forgetExpiry(c *conn) {
	if h.expiry.n.Load() > 0 {
		h.stopExpiry(c)
	}
}

// unixOrZero returns t in unix seconds, or 0 for the zero time.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// refresh runs a client's refresh command.
func (h *Handler) refresh(c *conn, data json.RawMessage) {
	var d struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(data, &d) != nil || d.Token == "" {
		h.sendError(c, ErrCodeBadData, `refresh data must be {"token":"…"}`)
		return
	}
	if h.cfg.Refresh == nil {
		h.sendError(c, ErrCodeForbidden, "this server does not refresh tokens")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	id, err := h.cfg.Refresh(ctx, d.Token)
	if err != nil || id == nil {
		h.logger.Debug("realtime: refresh refused", "conn", c.id, "err", err)
		h.sendError(c, ErrCodeUnauthorized, "token refused")
		return
	}
	if id.UserID != c.UserID() {
		h.sendError(c, ErrCodeForbidden, "the token is another user's")
		return
	}
	if !id.ExpiresAt.IsZero() && !id.ExpiresAt.After(time.Now()) {
		h.sendError(c, ErrCodeUnauthorized, "token expired")
		return
	}
	old := c.identity()
	c.ident.Store(id)
	if id.ExpiresAt.IsZero() && !old.ExpiresAt.IsZero() {
		h.stopExpiry(c)
	} else {
		h.watchExpiry(c)
	}
	msg, err := SystemMessage(MessageTypeRefresh, RefreshData{UserID: id.UserID, ExpiresAt: unixOrZero(id.ExpiresAt)})
	if err == nil {
		c.Send(msg)
	}
}

// stopExpiry takes c out of the connections that expire, if it is there.
func (h *Handler) stopExpiry(c *conn) {
	h.expiry.mu.Lock()
	defer h.expiry.mu.Unlock()
	if h.expiry.remove(c) {
		h.rearmExpiry()
	}
}
