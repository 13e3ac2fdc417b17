package realtime

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Regressions found by a review of the first version of issue 12 (commits
// 2f84112, c116549): each test failed on that version; the comment above
// each says what it did wrong.

// R1: across pods the debounce runs from each pod's own last close, not from
// the user's last close anywhere. alice closes on a, then (debounce/2 later)
// on b, and comes back (on b) debounce*3/4 after her LAST connection closed:
// within the debounce, so the contract says no offline. Pod a settles a
// debounce after ITS close, sees no connection anywhere and announces
// offline; her return then announces online: a flap.
func TestOfflineDebounceCountsFromLastCloseAnywhere(t *testing.T) {
	srv := redistest.Start(t)
	const debounce = 800 * time.Millisecond
	a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
	b := startPodWith(t, "b", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
	bob := dial(t, a.url, as("bob"))
	bob.joinSince("r", nil)
	onA, onB := dial(t, a.url, as("alice")), dial(t, b.url, as("alice"))
	onA.joinSince("r", nil)
	onB.joinSince("r", nil)
	waitListening(t, "r", a, b)
	time.Sleep(100 * time.Millisecond)

	onA.ws.Close()
	time.Sleep(debounce / 2)
	onB.ws.Close() // her last connection anywhere
	lastClose := time.Now()
	time.Sleep(debounce * 3 / 4)
	back := dial(t, b.url, as("alice"))
	cameBack := time.Since(lastClose)
	back.joinSince("r", nil)
	time.Sleep(2 * debounce)
	assert.Empty(t, presenceOf(t, untilPong(bob), "alice"),
		"alice came back %v after her last connection closed (debounce %v): no offline/online flap is due", cameBack, debounce)
}

// R2: a refresh whose hook returns after the connection closed arms a new
// expiry timer for the closed connection; detach already ran forgetExpiry,
// and expire never deletes the map entry: h.expiry.m keeps the *conn (its
// Identity and claims) for the life of the handler.
func TestRefreshAfterCloseLeavesNoExpiryEntry(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cfg := HandlerConfig{
		AuthenticateIdentity: identityAuth,
		Refresh: func(ctx context.Context, token string) (*Identity, error) {
			once.Do(func() { close(started) })
			select {
			case <-release:
			case <-ctx.Done():
			}
			return &Identity{UserID: "alice", ExpiresAt: time.Now().Add(200 * time.Millisecond)}, nil
		},
	}
	ts := newTestServer(t, httpDoor, cfg)
	c := dial(t, ts.url, http.Header{"X-User": {"alice"}, "X-TTL": {"1h"}})
	c.send(map[string]any{"type": "refresh", "data": map[string]string{"token": "t"}})
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("refresh hook not called")
	}
	c.ws.Close()
	require.Eventually(t, func() bool { return ts.handler.Stats().Closed == 1 }, 5*time.Second, 10*time.Millisecond)
	close(release)
	time.Sleep(time.Second) // the refresh stored its timer; it fired on the closed connection
	n := ts.handler.expiry.armed()
	assert.Zero(t, n, "expiry entries of closed connections (never removed)")
}

// tcpProxy forwards to a Redis server and can cut the link (a network
// partition: Redis keeps its data, the pod cannot reach it).
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    atomic.Bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.sever() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.cut.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close(); c.Close() }()
			go func() { io.Copy(c, u); u.Close(); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) sever() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// R3: a -1 lost while Redis is unreachable (shorter than the lease TTL, so
// no resync follows) leaves the user's connection counted forever: the user
// is "online" with a connection it no longer has, and its rooms never hear
// "offline" (the settle failed too, and its rooms were dropped).
func TestLostDecrementIsRepaired(t *testing.T) {
	srv := redistest.Start(t)
	px := startProxy(t, srv.Addr)
	const debounce = 200 * time.Millisecond
	a := startPodWith(t, "a", redistest.Client(t, px.Addr()), HandlerConfig{PresenceDebounce: debounce})
	bob := dial(t, a.url, as("bob"))
	bob.joinSince("r", nil)
	alice := dial(t, a.url, as("alice"))
	alice.joinSince("r", nil)
	ctx := context.Background()
	require.Eventually(t, func() bool { n, err := a.h.UserConnections(ctx, "alice"); return err == nil && n == 1 },
		5*time.Second, 20*time.Millisecond)

	px.cut.Store(true)
	px.sever()
	alice.ws.Close()
	bob.readType(MessageTypeLeave)
	time.Sleep(6 * time.Second) // the -1 and the settle ran and failed (5 s write timeout)
	px.cut.Store(false)
	require.Eventually(t, func() bool { return a.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond)

	assert.Eventually(t, func() bool { n, err := a.h.UserConnections(ctx, "alice"); return err == nil && n == 0 },
		5*time.Second, 100*time.Millisecond, "alice has no connection, but Redis still counts one")
	assert.Contains(t, presenceOf(t, untilPong(bob), "alice"), PresenceOffline, "bob never hears alice went offline")
}

// R4: Settle while Redis is down drops the rooms (takeGone already forgot
// them): once Redis is back, the offline event never comes.
func TestSettleDuringOutageIsRetried(t *testing.T) {
	srv := redistest.Start(t)
	const debounce = 200 * time.Millisecond
	a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PresenceDebounce: debounce})
	bob := dial(t, a.url, as("bob"))
	bob.joinSince("r", nil)
	alice := dial(t, a.url, as("alice"))
	alice.joinSince("r", nil)
	time.Sleep(100 * time.Millisecond)

	srv.Kill()
	alice.ws.Close()
	bob.readType(MessageTypeLeave)
	time.Sleep(debounce + 6*time.Second) // the settle's write times out (5 s)
	srv.Restart()
	require.Eventually(t, func() bool { return a.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond)
	deadline := time.Now().Add(3 * time.Second)
	var got []string
	for time.Now().Before(deadline) && len(got) == 0 {
		got = presenceOf(t, untilPong(bob), "alice")
		time.Sleep(100 * time.Millisecond)
	}
	assert.Equal(t, []string{PresenceOffline}, got, "alice's last connection closed; her room must hear offline")
}

// gatedHub is a ShardedHub whose RoomCount of one room waits on a gate once
// armed: it holds announcePresence (which asks RoomCount per room) between
// takeGone and remember.
type gatedHub struct {
	*ShardedHub
	room    string
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (g *gatedHub) RoomCount(room string) int {
	if room == g.room && g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.release
	}
	return g.ShardedHub.RoomCount(room)
}

// R5: one pod (no tracker). settleOffline takes the user's entry
// (takeGone), announces offline, then remember()s the rooms for the user's
// return. A user who reconnects between the two creates a fresh entry (add:
// back is empty, so no online), and remember then sees the entry and keeps
// nothing: the room heard "offline" and never hears "online" although the
// user is connected.
func TestReturnDuringOfflineAnnouncementHearsOnline(t *testing.T) {
	g := &gatedHub{ShardedHub: NewHub(quietLogger()), room: "r", reached: make(chan struct{}), release: make(chan struct{})}
	const debounce = 100 * time.Millisecond
	h := NewHandler(g, quietLogger(), HandlerConfig{Authenticate: userAuth, PresenceDebounce: debounce})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	srv := httptestServer(t, h)
	bob := dial(t, srv, as("bob"))
	bob.join("r")
	alice := dial(t, srv, as("alice"))
	alice.join("r")
	bob.readType(MessageTypeJoin)

	alice.ws.Close()
	bob.readType(MessageTypeLeave)
	g.armed.Store(true)
	select {
	case <-g.reached: // settleOffline is announcing: takeGone ran, remember has not
	case <-time.After(5 * time.Second):
		t.Fatal("no offline announcement")
	}
	back := make(chan error, 1)
	go func() { // she is back; her greeting waits for the offline to be told
		ws, _, err := websocket.DefaultDialer.Dial(srv, as("alice"))
		if err == nil {
			t.Cleanup(func() { ws.Close() })
			_, _, err = ws.ReadMessage()
		}
		back <- err
	}()
	time.Sleep(100 * time.Millisecond)
	close(g.release)
	require.NoError(t, <-back)
	waitPresence(t, bob, "alice", PresenceOffline)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, []string{PresenceOnline}, presenceOf(t, untilPong(bob), "alice"),
		"alice is connected again after the offline: the room must hear online")
	assert.True(t, h.Online("alice"))
}

func httptestServer(t *testing.T, h *Handler) string {
	srv := httptest.NewServer(h.Routes())
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// R6: a pod that stops (its Run's context ends, as the server binary does
// for the hub and the broadcaster together) removes its lease (ZREM) while
// its users' per-connection counts stay in rt.{pres.u.<user>} and the room
// hashes: the presence writers return at ctx.Done without draining the -1s
// the handler's shutdown queued, and after the ZREM the incarnation is
// "unknown", whose fields forget() never removes. The keys have no TTL: every
// restart leaves its users' and rooms' entries in Redis for good.
func TestStoppedPodLeavesNoPresenceEntries(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv.Addr)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	alice := dial(t, a.url, as("alice"))
	alice.joinSince("r", nil)
	ctx := context.Background()
	require.Eventually(t, func() bool { n, _ := b.h.UserConnections(ctx, "alice"); return n == 1 }, 5*time.Second, 20*time.Millisecond)

	a.stop() // graceful: hub (handler shutdown, 1001) and broadcaster end together
	alice.closeCode()
	// Someone asks about alice and the room on the live pod: the queries
	// remove the fields of incarnations they know are dead.
	time.Sleep(500 * time.Millisecond)
	n, err := b.h.UserConnections(ctx, "alice")
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = b.h.RoomMembers(ctx, "r")
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	for _, key := range []string{"rt.{pres.u.alice}", "rt.{pres.r.r}"} {
		fields, err := rc.Do(ctx, rc.B().Hgetall().Key(key).Build()).AsStrMap()
		require.NoError(t, err)
		ttl, _ := rc.Do(ctx, rc.B().Ttl().Key(key).Build()).AsInt64()
		assert.Empty(t, fields, "%s still holds the stopped pod's entries (ttl %d): %v", key, ttl, fields)
	}
}
