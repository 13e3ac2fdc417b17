package realtime

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"
)

// MaxHandshakeBytes is the most bytes of request line and headers either
// door accepts; a bigger handshake is refused with HTTP 431. (The raw door
// stops reading there. For the net/http door, set your http.Server's
// MaxHeaderBytes to it too, so that net/http does not buffer up to its
// default of 1 MiB first.)
const MaxHandshakeBytes = 16 << 10

// HandlerConfig configures a Handler. Its zero value is safe and useful: a
// single pod, anonymous users, same-host origins only, and the limits below.
// NewHandler copies it and fills in defaults; the caller's value is never
// changed.
//
// NewHandler copies it: changing it afterwards has no effect, and it may be
// shared by several handlers.
type HandlerConfig struct {
	// Broadcaster carries room messages, direct messages and events to the
	// other pods. nil: single pod, messages go straight to the hub.
	Broadcaster Broadcaster

	// Authenticate returns the user ID for an upgrade request, or an error
	// to refuse it with HTTP 401. For the raw door (Serve) the request holds
	// the method, URL, Host and headers of the handshake, and no body.
	// nil: everyone is anonymous (user ID "").
	Authenticate func(r *http.Request) (userID string, err error)
	// AuthenticateIdentity, when set, is used instead of Authenticate: it
	// returns the connection's Identity (user ID, an expiry, claims that the
	// hooks below can read later through IdentityOf), or an error to refuse
	// with HTTP 401. A nil Identity is anonymous. A connection whose Identity
	// has an ExpiresAt is closed with CloseUnauthorized (3000, "token
	// expired") then, unless the client refreshes it (see Refresh).
	AuthenticateIdentity func(r *http.Request) (*Identity, error)
	// Refresh checks a token a client sent in a refresh command
	// ({"type":"refresh","data":{"token":"…"}}) and returns its Identity. If
	// it is the connection's user, it becomes the connection's Identity (its
	// ExpiresAt the new deadline) and the client gets a refresh message with
	// user_id and expires_at; a token of another user is refused with
	// "forbidden", one Refresh rejects with "unauthorized". nil: refresh
	// commands are refused with "forbidden".
	Refresh func(ctx context.Context, token string) (*Identity, error)

	// AllowedOrigins lists the browser origins allowed besides the request's
	// own host, as full origins ("https://app.example.com") or hosts
	// ("app.example.com"); "*" allows any. Requests without an Origin header
	// (not from a browser) are allowed. Others get HTTP 403.
	// nil: same host only.
	AllowedOrigins []string

	// AuthorizeJoin decides whether a user may join a room; an error refuses
	// with a "forbidden" error message. nil: anyone may join any room.
	// With AuthorizeJoin or AuthorizePublish set, client commands run on a
	// pool of their own (each connection's in order), never on the workers
	// that read and write sockets, so a hook may wait (on a database, say).
	AuthorizeJoin func(userID, room string) error
	// AuthorizePublish decides whether a user may send a message of msgType
	// to a room; an error refuses with "forbidden". nil: members may publish.
	AuthorizePublish func(userID, room, msgType string) error
	// AuthorizeJoinContext and AuthorizePublishContext are AuthorizeJoin and
	// AuthorizePublish with a context (ending after 10 s) and the
	// connection's whole Identity. When both forms are set, both must allow.
	// They run off the socket workers, as AuthorizeJoin does.
	AuthorizeJoinContext    func(ctx context.Context, id *Identity, room string) error
	AuthorizePublishContext func(ctx context.Context, id *Identity, room, msgType string) error

	// MaxMessageSize is the largest client message in bytes; a larger one
	// closes the connection with 1009. Default: 64 KiB.
	MaxMessageSize int
	// SendQueueBytes bounds what a connection's send queue may hold: the
	// bytes of its queued frames plus 32 per frame, so memory stays bounded
	// whatever the message sizes. A client that lets it fill (it reads more
	// slowly than messages come) is disconnected with 1008 "slow consumer":
	// its backlog is dropped and the close frame goes out next, so it slows
	// no one else down and pins no more memory. A burst of small frames to a
	// reading client fits easily (1 MiB is about a thousand 1 KiB frames,
	// which a reading client drains in a millisecond). A frame larger than the
	// bound still goes out when the queue is empty. Default: 1 MiB (as
	// centrifuge's client queue).
	SendQueueBytes int
	// SendQueueSize, when positive, also bounds how many frames may be
	// queued. Default: 0 (the byte bound alone).
	SendQueueSize int
	// RateLimit is how many messages per second a connection may send on
	// average, and RateBurst how many at once. Past them the client gets
	// "rate_limited" errors; RateBurst more refusals in a row close it with
	// 1008. Defaults: 50 per second, burst 100. A negative RateLimit turns
	// the limit off.
	RateLimit float64
	RateBurst int
	// PublishTimeout bounds one batch of messages handed to the
	// Broadcaster; past it, each sender gets publish_failed. A Redis that
	// stalls for less than this delays messages but fails none. One that
	// stalls longer makes the senders of the batch in flight hear
	// publish_failed, though Redis may still deliver what it had already
	// received when it resumes: publish_failed means "not confirmed".
	// Default: 15s (BenchmarkRedisStall: with 5 s, a 10 s stall answered
	// publish_failed for 660 messages that all arrived; with 15 s, for none).
	PublishTimeout time.Duration
	// PublishQueueSize is how many messages may wait for the Broadcaster,
	// over all lanes of the publish pipeline; past it, a sender gets
	// publish_failed at once. A room's messages all use one lane (that is
	// how their order is kept), which holds PublishQueueSize divided by the
	// number of lanes (4 × GOMAXPROCS, at least 8). Nothing that waits on the Broadcaster runs on
	// the workers that read and write sockets. Default: 8192.
	PublishQueueSize int
	// MaxRoomsPerConn is how many rooms one connection may be in at once.
	// Default: 100.
	MaxRoomsPerConn int

	// AcceptRate is how many upgrades per second the handler takes on
	// average, AcceptBurst how many at once; past them a client gets HTTP
	// 503 with Retry-After (1–3 s, at random), or, a browser (which cannot
	// read that status), an upgrade closed at once with 1013 and a
	// reconnect_ms hint, so that a reconnect storm
	// ramps up instead of starving the connections already served. Defaults:
	// 20,000 per second, burst 2,000: above what two cores complete here
	// (about 10,500 a second on the raw door), so that the limit cuts in
	// only when a storm is more than the pod can take (at 10,000 it was the
	// load test's bottleneck).
	// A negative AcceptRate turns the limit off.
	AcceptRate  float64
	AcceptBurst int
	// DrainRate is how many connections per second Shutdown closes (with
	// 1001 and a reconnect hint), so that the pods taking them over see a
	// ramp, not a cliff; DrainWindow is the longest the drain may take (the
	// rate rises to fit it). Defaults: 5,000 per second (as Phoenix's 10,000
	// per 2 s), 10 s, which with CloseTimeout fits Kubernetes' default
	// terminationGracePeriodSeconds of 30 s.
	DrainRate   float64
	DrainWindow time.Duration

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
	// ShutdownTimeout bounds Shutdown when its context has no deadline, and
	// the shutdown that the ShardedHub's Run starts. Default: DrainWindow +
	// 2 × CloseTimeout (20 s).
	ShutdownTimeout time.Duration

	// JoinEventsMaxMembers is the most members a room may have on this pod
	// for its members to get a join or leave event for each member who
	// comes or goes (and an offline presence event), as the original
	// protocol did. A bigger room gets one members_diff event per
	// JoinEventsWindow instead, with how many joined and left: one frame per
	// window however many join, so a reconnect storm into a room of 10,000
	// costs 10,000 × windows deliveries, not 10,000² (Discord stops member
	// events past its "large threshold", default 50, the same way). Clients
	// ask a big room's roster with a members command. Default: 50 (a storm of
	// 10,000 into 100 rooms of 100 connected at 4,026/s with 50, 1,600/s
	// with 100: loadtest -rooms 100).
	JoinEventsMaxMembers int
	// JoinEventsWindow is how often a big room gets its members_diff.
	// Default: 1s.
	JoinEventsWindow time.Duration
	// MembersDiffMaxFrames bounds what a big room's members_diff costs this
	// pod: a room with more members here than this gets its members_diff
	// every ceil(members / MembersDiffMaxFrames) windows instead of every
	// window, counting what joined and left in all of them (by default a
	// room of 10,000 every 10 s, one of 2,500 every 3 s; the wait is set
	// when the first window ends). A pod's count updates then cost at most
	// about this many frames per window per room on each pod, however big
	// the room (a pod also delivers the diffs of the other pods that hold
	// the room: with P of them, up to P times this). Negative: every window.
	// Default: 1,000.
	MembersDiffMaxFrames int
	// JoinEventsDelay is how long a small room's join and leave events wait
	// to reach this pod's members together: the events of one window go to
	// each member in one write (each a single join or leave event, as
	// always), so a storm of joins costs members × windows writes, not
	// members × joins. A member's message to the room is never delivered
	// before its own join event. Other pods get the events at once and
	// deliver them as they come. Negative: each event at once. Default:
	// 100ms.
	JoinEventsDelay time.Duration
	// DisableJoinLeaveEvents stops join, leave and members_diff events going
	// to rooms; the joiner or leaver still gets its own as the
	// acknowledgement. Default: false (events on).
	DisableJoinLeaveEvents bool

	// PresenceDebounce is how long after a user's last connection anywhere
	// closed its rooms hear that it is offline: a user who comes back
	// within it (a page reload) causes no offline-online flap. Default: 15s
	// (as AnyCable).
	PresenceDebounce time.Duration

	// HistorySize is how many recent messages each room keeps, on a single
	// pod (no Broadcaster), for clients that rejoin with "since" (see
	// Position); -1 turns history off (messages then carry no offset).
	// With a RedisBroadcaster its WithHistory option rules instead.
	// Default: 100.
	HistorySize int
	// HistoryTTL is how long a kept message stays recoverable. Default: 5m.
	HistoryTTL time.Duration
	// HistoryMaxBytes bounds the kept messages of all rooms on this pod
	// (encoded size plus 64 bytes each) and their positions (256 bytes
	// each); past it the oldest messages go first, then the positions of
	// the rooms idle longest. A room's position outlives its messages by 24
	// hours, so that a client of a quiet room still recovers. Default:
	// 64 MiB.
	HistoryMaxBytes int64

	// PodID prefixes the IDs of this handler's connections and messages, so
	// an ID tells which pod owns it. Letters, digits, '-' and '_'.
	// Default: 8 random hex digits.
	PodID string
	// Workers is the size of the pool that reads, handles and writes polled
	// connections. Default: 8 × GOMAXPROCS.
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
	set(&c.SendQueueBytes, 1<<20)
	set(&c.JoinEventsMaxMembers, 50)
	setD(&c.JoinEventsWindow, time.Second)
	if c.MembersDiffMaxFrames == 0 {
		c.MembersDiffMaxFrames = 1000
	}
	if c.JoinEventsDelay == 0 {
		c.JoinEventsDelay = 100 * time.Millisecond
	}
	setD(&c.PresenceDebounce, 15*time.Second)
	set(&c.PublishQueueSize, 8192)
	setD(&c.PublishTimeout, 15*time.Second)
	set(&c.RateBurst, 100)
	if c.RateLimit == 0 {
		c.RateLimit = 50
	}
	set(&c.MaxRoomsPerConn, 100)
	if c.HistorySize == 0 {
		c.HistorySize = 100
	}
	setD(&c.HistoryTTL, 5*time.Minute)
	if c.HistoryMaxBytes <= 0 {
		c.HistoryMaxBytes = 64 << 20
	}
	setD(&c.PingInterval, 25*time.Second)
	setD(&c.PongTimeout, 60*time.Second)
	setD(&c.HandshakeTimeout, 10*time.Second)
	setD(&c.CloseTimeout, 5*time.Second)
	setD(&c.WriteTimeout, 10*time.Second)
	if c.AcceptRate == 0 {
		c.AcceptRate = 20_000
	}
	set(&c.AcceptBurst, 2_000)
	if c.DrainRate <= 0 {
		c.DrainRate = 5_000
	}
	setD(&c.DrainWindow, 10*time.Second)
	setD(&c.ShutdownTimeout, c.DrainWindow+2*c.CloseTimeout)
	set(&c.Workers, 8*runtime.GOMAXPROCS(0))
	set(&c.Pollers, runtime.GOMAXPROCS(0))
	if c.PodID == "" {
		if p, ok := c.Broadcaster.(PodNamer); ok {
			c.PodID = p.PodID() // connection IDs must name the pod the broadcaster routes to
		} else {
			c.PodID = randomPodID()
		}
	}
	if !validPodID(c.PodID) {
		return c, fmt.Errorf("%w: %q", ErrBadPodID, c.PodID)
	}
	return c, nil
}

// validPodID: letters, digits, '-' and '_' (a '.' would break the
// "<pod>.<handler>-<n>" connection IDs that direct messages are routed by).
func validPodID(id string) bool {
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
