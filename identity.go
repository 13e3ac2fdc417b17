package realtime

import (
	"context"
	"net/http"
	"time"
)

// Identity is who a connection is: what HandlerConfig.AuthenticateIdentity
// returns for its upgrade request (or, with the older Authenticate hook, the
// user ID alone), kept with the connection for the hooks that run later.
//
// It is a plain value. A Handler never modifies an Identity it was given, and
// hooks must not either: it may be read from several goroutines at once. A
// refresh replaces the connection's Identity with the new one.
type Identity struct {
	// UserID is the user's ID; "" is anonymous.
	UserID string
	// ExpiresAt, when not zero, is when the credentials expire: the
	// connection is closed then with CloseUnauthorized ("token expired")
	// unless the client refreshed them first (HandlerConfig.Refresh).
	ExpiresAt time.Time
	// Claims holds what the hook wants later hooks to read (token claims,
	// a tenant, roles). The Handler does not look at it.
	Claims map[string]any
}

// Close codes the server sends besides RFC 6455's.
const (
	// CloseUnauthorized (3000) closes a connection whose credentials expired
	// (reason "token expired").
	CloseUnauthorized uint16 = 3000
	// CloseForbidden (3003) closes a connection that the server API (or
	// Handler.DisconnectUser) disconnected (reason "disconnected").
	CloseForbidden uint16 = 3003
)

// anonymous is the Identity of every connection without a user.
var anonymous = &Identity{}

// IdentityOf returns the Identity of a connection: the one its
// authentication gave (the latest refresh's), or for a Connection that is not
// the Handler's, one with its UserID. It never returns nil.
func IdentityOf(c Connection) *Identity {
	if cc, ok := c.(*conn); ok {
		return cc.identity()
	}
	if u := c.UserID(); u != "" {
		return &Identity{UserID: u}
	}
	return anonymous
}

// identity returns c's Identity (never nil).
func (c *conn) identity() *Identity {
	if id := c.ident.Load(); id != nil {
		return id
	}
	return anonymous
}

// authenticate runs the authentication hook for r: AuthenticateIdentity if
// set, else Authenticate, else everyone is anonymous.
func (h *Handler) authenticate(r *http.Request) (*Identity, error) {
	switch {
	case h.cfg.AuthenticateIdentity != nil:
		id, err := h.cfg.AuthenticateIdentity(r)
		if err != nil {
			return nil, err
		}
		if id == nil {
			return anonymous, nil
		}
		return id, nil
	case h.cfg.Authenticate != nil:
		user, err := h.cfg.Authenticate(r)
		if err != nil || user == "" {
			return anonymous, err
		}
		return &Identity{UserID: user}, nil
	}
	return anonymous, nil
}

// hookTimeout bounds the context a hook gets.
const hookTimeout = 10 * time.Second

// hasCommandHooks reports whether client commands may wait on hooks, and so
// run on the command pool rather than the socket workers.
func (c *HandlerConfig) hasCommandHooks() bool {
	return c.AuthorizeJoin != nil || c.AuthorizePublish != nil || c.AuthorizeJoinContext != nil ||
		c.AuthorizePublishContext != nil || c.Refresh != nil
}

// authorizeJoin asks the join hooks whether c may join room.
func (h *Handler) authorizeJoin(c *conn, room string) error {
	if f := h.cfg.AuthorizeJoinContext; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		defer cancel()
		if err := f(ctx, c.identity(), room); err != nil {
			return err
		}
	}
	if f := h.cfg.AuthorizeJoin; f != nil {
		return f(c.UserID(), room)
	}
	return nil
}

// authorizePublish asks the publish hooks whether c may send msgType to room.
func (h *Handler) authorizePublish(c *conn, room, msgType string) error {
	if f := h.cfg.AuthorizePublishContext; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
		defer cancel()
		if err := f(ctx, c.identity(), room, msgType); err != nil {
			return err
		}
	}
	if f := h.cfg.AuthorizePublish; f != nil {
		return f(c.UserID(), room, msgType)
	}
	return nil
}
