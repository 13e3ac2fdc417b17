package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// HandlerConfig configures a Handler. Its zero value is safe and useful: a
// single pod, anonymous users, same-host origins only, and the limits below.
// NewHandler copies it and fills in defaults; the caller's value is never
// changed.
type HandlerConfig struct {
	// Broadcaster carries room messages, direct messages and events to the
	// other pods. nil: single pod, messages go straight to the hub.
	Broadcaster Broadcaster

	// Authenticate returns the user ID for an upgrade request, or an error
	// to refuse it with HTTP 401. For the raw door (Serve) the request holds
	// the method, URL, Host and headers of the handshake, and no body.
	// nil: everyone is anonymous (user ID "").
	Authenticate func(r *http.Request) (userID string, err error)

	// AllowedOrigins lists the browser origins allowed besides the request's
	// own host, as full origins ("https://app.example.com") or hosts
	// ("app.example.com"); "*" allows any. Requests without an Origin header
	// (not from a browser) are allowed. Others get HTTP 403.
	// nil: same host only.
	AllowedOrigins []string

	// AuthorizeJoin decides whether a user may join a room; an error refuses
	// with a "forbidden" error message. nil: anyone may join any room.
	AuthorizeJoin func(userID, room string) error
	// AuthorizePublish decides whether a user may send a message of msgType
	// to a room; an error refuses with "forbidden". nil: members may publish.
	AuthorizePublish func(userID, room, msgType string) error

	// MaxMessageSize is the largest client message in bytes; a larger one
	// closes the connection with 1009. Default: 64 KiB.
	MaxMessageSize int
	// SendQueueSize is how many frames may wait for a connection whose
	// socket buffer is full; a client that lets it fill is disconnected
	// (1008, "slow consumer") so that it slows no one else down. While the
	// socket still takes data the queue may hold 4× this during a burst.
	// Default: 256.
	SendQueueSize int
	// RateLimit is how many messages per second a connection may send on
	// average, and RateBurst how many at once. Past them the client gets
	// "rate_limited" errors; RateBurst more refusals in a row close it with
	// 1008. Defaults: 50 per second, burst 100. A negative RateLimit turns
	// the limit off.
	RateLimit float64
	RateBurst int
	// MaxRoomsPerConn is how many rooms one connection may be in at once.
	// Default: 100.
	MaxRoomsPerConn int

	// PingInterval is how often the server pings a connection. Default: 25s.
	PingInterval time.Duration
	// PongTimeout closes a connection that sent nothing (not even a pong) for
	// this long. Default: 60s.
	PongTimeout time.Duration
	// HandshakeTimeout bounds the opening handshake on the raw door and the
	// handshake response on both. Default: 10s.
	HandshakeTimeout time.Duration
	// CloseTimeout is how long a closing connection waits for its queued
	// frames to go out and the peer's close frame. Default: 5s.
	CloseTimeout time.Duration
	// WriteTimeout bounds one write to a connection that cannot be polled
	// (TLS); polled connections never block. Default: 10s.
	WriteTimeout time.Duration
	// ShutdownTimeout bounds Shutdown when its context has no deadline,
	// and the shutdown that the ShardedHub's Run starts. Default: 5s.
	ShutdownTimeout time.Duration

	// DisableJoinLeaveEvents stops join and leave events going to rooms
	// (huge rooms want this); the joiner or leaver still gets its own as the
	// acknowledgement. Default: false (events on).
	DisableJoinLeaveEvents bool

	// PodID prefixes the IDs of this handler's connections and messages, so
	// an ID tells which pod owns it. Letters, digits, '-' and '_'.
	// Default: 8 random hex digits.
	PodID string
	// Workers is the size of the pool that reads, handles and writes polled
	// connections. Default: 8 × GOMAXPROCS (a worker waits only on the
	// Broadcaster and the Authorize callbacks, never on a socket).
	Workers int
	// Pollers is how many epoll instances dispatch readiness. Default:
	// GOMAXPROCS.
	Pollers int
}

func (c HandlerConfig) withDefaults() (HandlerConfig, error) {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	set(&c.MaxMessageSize, 64<<10)
	set(&c.SendQueueSize, 256)
	set(&c.RateBurst, 100)
	if c.RateLimit == 0 {
		c.RateLimit = 50
	}
	set(&c.MaxRoomsPerConn, 100)
	setD(&c.PingInterval, 25*time.Second)
	setD(&c.PongTimeout, 60*time.Second)
	setD(&c.HandshakeTimeout, 10*time.Second)
	setD(&c.CloseTimeout, 5*time.Second)
	setD(&c.WriteTimeout, 10*time.Second)
	setD(&c.ShutdownTimeout, 5*time.Second)
	set(&c.Workers, 8*runtime.GOMAXPROCS(0))
	set(&c.Pollers, runtime.GOMAXPROCS(0))
	if c.PodID == "" {
		if p, ok := c.Broadcaster.(interface{ PodID() string }); ok {
			c.PodID = p.PodID() // connection IDs must name the pod the broadcaster routes to
		} else {
			c.PodID = randomPodID()
		}
	}
	for _, r := range c.PodID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return c, fmt.Errorf("realtime: PodID %q: only letters, digits, '-' and '_'", c.PodID)
		}
	}
	return c, nil
}

func randomPodID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Handler upgrades HTTP requests or raw TCP connections to WebSockets, speaks
// the JSON protocol with clients, and connects them to a Hub. Both doors,
// Routes (inside net/http) and Serve (raw listener), run the same checks and
// feed the same hub. All methods may be called concurrently.
type Handler struct {
	hub    Hub
	rooms  roomHub
	logger *slog.Logger
	cfg    HandlerConfig
	eng    *engine

	seq      atomic.Uint64
	presence presenceCounts
	stats    handlerCounters

	lnMu      sync.Mutex
	listeners map[net.Listener]struct{}
}

// NewHandler returns a Handler for hub. A nil logger means slog.Default().
// It panics if cfg is invalid (a bad PodID), as a misconfiguration should
// fail at start-up. With a *ShardedHub, the hub's Run shuts the handler down
// when its context ends; with another Hub, call Shutdown.
func NewHandler(hub Hub, logger *slog.Logger, cfg HandlerConfig) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	h := &Handler{hub: hub, logger: logger, cfg: cfg, listeners: map[net.Listener]struct{}{}}
	h.eng = newEngine(h)
	if rh, ok := hub.(roomHub); ok {
		h.rooms = rh
	} else {
		h.rooms = connRooms{hub}
	}
	if sh, ok := hub.(*ShardedHub); ok {
		sh.onShutdown(func() {
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

// ServeHTTP upgrades r to a WebSocket: 403 for a foreign origin, 401 when
// Authenticate refuses, 400 for a request that is not a WebSocket handshake,
// 503 after Shutdown.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.eng.stopping.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	userID, status, err := h.admit(r)
	if err != nil {
		h.stats.rejected.Add(1)
		http.Error(w, err.Error(), status)
		return
	}
	u := ws.HTTPUpgrader{Timeout: h.cfg.HandshakeTimeout}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close() // Upgrade returns the hijacked conn even when it fails
		}
		h.stats.rejected.Add(1)
		h.logger.Debug("realtime: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	var early []byte
	if rw != nil && rw.Reader.Buffered() > 0 {
		early, _ = rw.Reader.Peek(rw.Reader.Buffered()) // the client's first frames
		early = append([]byte(nil), early...)
	}
	h.attach(nc, userID, early)
}

// admit runs the checks both doors share: origin, then authentication.
func (h *Handler) admit(r *http.Request) (userID string, status int, err error) {
	if !h.originAllowed(r) {
		return "", http.StatusForbidden, errors.New("origin not allowed")
	}
	if h.cfg.Authenticate != nil {
		userID, err = h.cfg.Authenticate(r)
		if err != nil {
			h.logger.Debug("realtime: authentication failed", "remote", r.RemoteAddr, "err", err)
			return "", http.StatusUnauthorized, errors.New("unauthorized")
		}
	}
	return userID, 0, nil
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

// maxHandshakeBytes bounds the request line and headers on the raw door.
const maxHandshakeBytes = 16 << 10

// ErrHandlerClosed is returned by Serve after Shutdown.
var ErrHandlerClosed = errors.New("realtime: handler shut down")

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

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// recorder keeps what the upgrader reads, so that bytes the client sent
// right after its handshake (its first frames) are not lost in the
// upgrader's pooled buffer.
type recorder struct {
	net.Conn
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.buf = append(r.buf, p[:n]...)
	if len(r.buf) > maxHandshakeBytes {
		return n, errors.New("handshake too large")
	}
	return n, err
}

func (h *Handler) serveRaw(nc net.Conn) {
	defer h.eng.handshakes.Done()
	nc.SetDeadline(time.Now().Add(h.cfg.HandshakeTimeout))
	rec := &recorder{Conn: nc}
	req := &http.Request{Method: http.MethodGet, Header: http.Header{}, RemoteAddr: nc.RemoteAddr().String()}
	var uri string
	var userID string
	u := ws.Upgrader{
		OnRequest: func(b []byte) error { uri = string(b); return nil },
		OnHost:    func(b []byte) error { req.Host = string(b); return nil },
		OnHeader: func(k, v []byte) error {
			req.Header.Add(string(k), string(v))
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if h.eng.stopping.Load() {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable), ws.RejectionReason("server shutting down"))
			}
			var err error
			if req.URL, err = url.ParseRequestURI(uri); err != nil {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(http.StatusBadRequest), ws.RejectionReason("bad request URI"))
			}
			req.RequestURI = uri
			var status int
			userID, status, err = h.admit(req)
			if err != nil {
				return nil, ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(err.Error()))
			}
			return nil, nil
		},
	}
	if _, err := u.Upgrade(rec); err != nil {
		h.stats.rejected.Add(1)
		h.logger.Debug("realtime: raw upgrade failed", "remote", req.RemoteAddr, "err", err)
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	var early []byte
	if i := strings.Index(string(rec.buf), "\r\n\r\n"); i >= 0 && i+4 < len(rec.buf) {
		early = rec.buf[i+4:]
	}
	h.attach(nc, userID, early)
}

// Shutdown stops both doors, closes every connection with 1001 (going away),
// waits until their queued frames are flushed or ctx ends (ShutdownTimeout
// if ctx has no deadline), then releases what is left and stops every
// goroutine the handler started. It is safe to call more than once.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.lnMu.Lock()
	first := h.eng.stopping.CompareAndSwap(false, true)
	for ln := range h.listeners {
		ln.Close()
	}
	h.lnMu.Unlock()
	if !first {
		<-h.eng.done
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.ShutdownTimeout)
		defer cancel()
	}
	return h.eng.shutdown(ctx)
}

// attach turns an upgraded socket into a registered connection.
func (h *Handler) attach(nc net.Conn, userID string, early []byte) {
	if h.eng.stopping.Load() {
		nc.Close()
		return
	}
	if err := h.eng.start(); err != nil {
		h.logger.Error("realtime: start engine", "err", err)
		nc.Close()
		return
	}
	c := &conn{
		id:     h.cfg.PodID + "." + strconv.FormatUint(h.seq.Add(1), 36),
		userID: userID,
		h:      h,
		fd:     -1,
		hbPos:  -1,
	}
	c.rd.MaxMessageSize = h.cfg.MaxMessageSize
	c.lastRead.Store(time.Now().UnixNano())
	if h.eng.poller != nil {
		if fd, err := dupFD(nc); err == nil {
			c.fd = int32(fd)
			nc.Close() // the duplicate keeps the socket; no net.Conn is kept
		}
	}
	if c.fd < 0 {
		c.nc = nc
	}
	// Until the socket is registered, the connection is "scheduled" so that
	// nothing runs its task: frames queued meanwhile wait in pend.
	c.scheduled.Store(true)
	h.eng.live.Add(1)
	h.eng.hb.add(c)
	h.stats.accepted.Add(1)
	h.hub.Register(c)
	if h.userOnline(c) {
		h.recordOnline(c.userID, true)
	}
	h.sendConnected(c)
	if len(early) > 0 {
		c.onBytes(early)
	}
	if c.fd >= 0 {
		// Record the interest before registering: if the client's first
		// frame is already waiting, the event fires at once and onPoll must
		// be the one to clear armed. Stored after Add, it could overwrite
		// that clear, and the task would then never re-arm the descriptor:
		// the socket would go unread until the ping timeout closed it.
		c.armed.Store(armRead)
		if err := h.eng.poller.Add(int(c.fd), c.onPoll); err != nil {
			h.logger.Error("realtime: poll", "conn", c.id, "err", err)
			c.teardown(err)
			return
		}
		if testHookRegistered != nil {
			testHookRegistered()
		}
		c.scheduled.Store(false)
		if c.pend.Load() != 0 {
			c.schedule()
		}
		return
	}
	c.scheduled.Store(false)
	h.eng.fallback.Add(1)
	go c.readLoop()
	c.mu.Lock()
	pending := len(c.queue) > 0
	c.mu.Unlock()
	if pending {
		c.kick(workFlush)
	}
}

// testHookRegistered, when set by a test, runs right after a connection's
// descriptor is registered with epoll, to widen a race window on purpose.
var testHookRegistered func()

// detach undoes attach after the socket is released: unregister, leave
// events, offline presence.
func (h *Handler) detach(c *conn, cause error) {
	rooms := h.rooms.Rooms(c)
	h.hub.Unregister(c)
	h.eng.hb.remove(c)
	for _, room := range rooms {
		if !h.cfg.DisableJoinLeaveEvents {
			h.roomEvent(c, MessageTypeLeave, room, true)
		}
	}
	for _, room := range rooms {
		h.recordMember(room, c, -1)
	}
	if h.userOffline(c) {
		h.recordOnline(c.userID, false)
		for _, room := range rooms {
			h.presenceEvent(c, room, PresenceOffline)
		}
	}
	h.stats.closed.Add(1)
	if cause != nil && !isPeerGone(cause) {
		h.logger.Debug("realtime: connection ended", "conn", c.id, "err", cause)
	}
	if h.eng.live.Add(-1) == 0 {
		h.eng.signalIdle()
	}
}
