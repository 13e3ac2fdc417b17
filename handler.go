package realtime

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/realtimehub/realtime/netpoll"
)

// Handler upgrades HTTP requests or raw TCP connections to WebSockets, speaks
// the JSON protocol with clients, and connects them to a Hub. Both doors,
// Routes (inside net/http) and Serve (raw listener), run the same checks and
// feed the same hub. All methods may be called concurrently.
type Handler struct {
	hub      Hub
	rooms    RoomHub          // the hub itself, or own for a Hub without RoomHub
	own      *connRooms       // rooms kept by the handler, or nil
	recorder PresenceRecorder // the Broadcaster's, or nil
	frames   FrameHub         // the hub's, or nil
	hist     historian        // room history, or nil when off
	mem      *memHistory      // hist when it is the handler's own, or nil
	logger   *slog.Logger
	cfg      HandlerConfig
	eng      *engine

	connSeq   atomic.Uint64 // connection IDs: "<pod>.<handler>-<n>"
	connIDs   string        // their prefix, "<pod>.<handler>-" (newConn)
	gate      *admission
	rosterSem chan struct{} // roster queries waiting on the Broadcaster
	memberMu  memberLocks
	pending   pendingJoins // joins waiting for Redis
	users     userIndex
	tracker   PresenceTracker // the Broadcaster's, or nil
	expiry    expiries
	stats     handlerCounters

	lnMu      sync.Mutex
	listeners map[net.Listener]*netpoll.Acceptor // each one's Acceptor, or nil

	hsMu        sync.Mutex
	handshaking map[net.Conn]struct{} // raw-door handshakes in progress
}

// NewHandler returns a Handler for hub. A nil logger means slog.Default().
// It panics if cfg is invalid (a bad PodID), as a misconfiguration should
// fail at start-up. With a hub that is a ShutdownNotifier (ShardedHub is),
// the hub's Run shuts the handler down when its context ends; with another
// Hub, call Shutdown.
func NewHandler(hub Hub, logger *slog.Logger, cfg HandlerConfig) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	h := &Handler{hub: hub, logger: logger, cfg: cfg, listeners: map[net.Listener]*netpoll.Acceptor{}, handshaking: map[net.Conn]struct{}{},
		connIDs: cfg.PodID + "." + randomHex(5) + "-"}
	h.eng = newEngine(h)
	h.gate = newAdmission(&h.cfg)
	h.rosterSem = make(chan struct{}, rosterQueries)
	if rh, ok := hub.(RoomHub); ok {
		h.rooms = rh
	} else {
		h.own = newConnRooms(hub)
		h.rooms = h.own
	}
	h.recorder, _ = cfg.Broadcaster.(PresenceRecorder)
	h.tracker, _ = cfg.Broadcaster.(PresenceTracker)
	if r, ok := cfg.Broadcaster.(UserRouter); ok {
		r.RouteUsers(h)
	}
	h.frames, _ = hub.(FrameHub)
	switch b := cfg.Broadcaster.(type) {
	case nil:
		if cfg.HistorySize > 0 {
			h.mem = newMemHistory(h)
			h.hist = h.mem
		}
	case interface{ roomHistory() historian }:
		h.hist = b.roomHistory()
	}
	if sn, ok := hub.(ShutdownNotifier); ok {
		sn.OnShutdown(func() {
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ShutdownTimeout)
			defer cancel()
			h.Shutdown(ctx)
		})
	}
	return h
}

// Config returns the handler's configuration with defaults filled in.
func (h *Handler) Config() HandlerConfig { return h.cfg }

// Routes returns the net/http door, to mount on any router:
// r.Mount("/ws", h.Routes()) with chi, mux.Handle("/ws", h.Routes()) with
// http.ServeMux. Every path under the mount point upgrades.
func (h *Handler) Routes() http.Handler { return h }

// admit runs the checks both doors share: origin, then authentication.
func (h *Handler) admit(r *http.Request) (id *Identity, status int, err error) {
	if !h.originAllowed(r) {
		return nil, http.StatusForbidden, errOriginNotAllowed
	}
	id, err = h.authenticate(r)
	if err != nil {
		h.logger.Debug("realtime: authentication failed", "remote", r.RemoteAddr, "err", err)
		return nil, http.StatusUnauthorized, errUnauthorized
	}
	return id, 0, nil
}

func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range h.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, origin) || strings.EqualFold(a, u.Host) {
			return true
		}
	}
	return false
}

// Shutdown stops both doors (upgrades in progress finish first, then leave
// like the rest; new ones get 503), closes every connection with 1001 (going away),
// waits until their queued frames are flushed or ctx ends (ShutdownTimeout
// if ctx has no deadline), then releases what is left and stops every
// goroutine the handler started. It is safe to call more than once.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.lnMu.Lock()
	first := h.eng.stopping.CompareAndSwap(false, true)
	for ln, acc := range h.listeners {
		closeListener(ln, acc)
	}
	h.lnMu.Unlock()
	h.cancelHandshakes() // handshakes in progress end now, not at their deadline
	if !first {
		select {
		case <-h.eng.done:
			return nil
		case <-ctx.Done():
			return ErrShutdownTimeout
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.ShutdownTimeout)
		defer cancel()
	}
	return h.eng.shutdown(ctx)
}
