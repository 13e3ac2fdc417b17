package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// Tests of the JS client itself (clients/js/realtime.js, as served at
// /realtime.js) in headless Chromium against the real server: the page at /
// gives the origin, and the test drives RealtimeClient objects in it.

// clientHarness loads the module and defines startClient(name, user, opts),
// which makes window.clients[name] = {c, rec}: a client for user and the
// record of its events, and track(name, key, promise), which records what
// became of a send in rec.sends[key]: "pending", "sent" or "rejected <code>".
const clientHarness = `(async () => {
	const mod = await import("/realtime.js");
	window.clients = {};
	window.startClient = (name, user, opts) => {
		const rec = { states: [], chats: [], errors: [], unrecovered: [], presence: [], joined: [], sends: {} };
		const c = new mod.RealtimeClient("ws://" + location.host + "/ws?user=" + user, opts);
		c.on("state", (d) => rec.states.push({ state: d.state, previous: d.previous, code: d.code ?? 0, reason: d.reason ?? "",
			retryInMs: d.retryInMs ?? -1, attempt: d.attempt ?? -1, text: d.text }));
		c.on("message", (m) => { if (m.type === "chat") rec.chats.push(typeof m.data === "string" ? m.data : JSON.stringify(m.data)); });
		c.on("error", (e) => rec.errors.push(e.code));
		c.on("unrecovered", (u) => rec.unrecovered.push(u.room + " " + u.reason));
		c.on("presence", (p) => rec.presence.push(p.room + " " + p.userId + " " + p.status));
		c.on("joined", (j) => rec.joined.push(j.room + " " + (j.recovered === undefined ? "new" : "recovered=" + j.recovered)));
		window.clients[name] = { c, rec };
	};
	window.track = (name, key, p) => {
		const sends = window.clients[name].rec.sends;
		sends[key] = "pending";
		p.then(() => { sends[key] = "sent"; },
			(e) => { sends[key] = e instanceof mod.RealtimeError ? "rejected " + e.code : "rejected, untyped: " + e; });
	};
})()`

// clientPage opens addr's page in tab and loads the client harness.
func clientPage(t *testing.T, tab context.Context, addr string) {
	require.NoError(t, chromedp.Do(tab,
		chromedp.Navigate("http://"+addr+"/"),
		chromedp.Evaluate[chromedp.Void](clientHarness, chromedp.EvalAwaitPromise),
	))
}

// runJS runs a statement in tab.
func runJS(t *testing.T, tab context.Context, code string) {
	t.Helper()
	_, err := chromedp.Run(tab, chromedp.Evaluate[chromedp.Void](code))
	require.NoError(t, err, code)
}

// jsValue evaluates expr in tab.
func jsValue[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// clientState is one "state" event as the harness records it.
type clientState struct {
	State, Previous, Reason, Text string
	Code, RetryInMs, Attempt      int
}

func clientStates(t *testing.T, tab context.Context, name string) []clientState {
	t.Helper()
	return jsValue[[]clientState](t, tab, `window.clients.`+name+`.rec.states`)
}

// stateNames is "connecting,open,reconnecting 1001,…": each state, with its
// close code when it has one.
func stateNames(states []clientState) string {
	var b []string
	for _, s := range states {
		if s.Code != 0 {
			b = append(b, fmt.Sprintf("%s %d", s.State, s.Code))
		} else {
			b = append(b, s.State)
		}
	}
	return strings.Join(b, ",")
}

// waitState polls until name has had state (with code, if not 0) since its
// first from states, and returns the first such event.
func waitState(t *testing.T, tab context.Context, name string, from int, state string, code int) clientState {
	t.Helper()
	match := func(s clientState) bool { return s.State == state && (code == 0 || s.Code == code) }
	poll(t, tab, fmt.Sprintf(`window.clients.%s.rec.states.slice(%d).some((s) => s.state === %q && (%d === 0 || s.code === %d))`,
		name, from, state, code, code))
	states := clientStates(t, tab, name)
	for _, s := range states[from:] {
		if match(s) {
			return s
		}
	}
	panic("unreachable")
}

// stateCount is how many states name has had.
func stateCount(t *testing.T, tab context.Context, name string) int {
	t.Helper()
	return jsValue[int](t, tab, `window.clients.`+name+`.rec.states.length`)
}

// watcher reads a protocol connection in the background and keeps what it
// got as lines: "chat alice <text>", "presence alice away", "join alice",
// "leave alice", or the type alone.
type watcher struct {
	mu    sync.Mutex
	lines []string
}

func watch(t *testing.T, url string) (*websocket.Conn, *watcher) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	w := &watcher{}
	go func() {
		for {
			var m struct {
				Type   string          `json:"type"`
				UserID string          `json:"user_id"`
				Data   json.RawMessage `json:"data"`
			}
			if ws.ReadJSON(&m) != nil {
				return
			}
			var d struct {
				UserID string `json:"user_id"`
				Status string `json:"status"`
			}
			var text string
			json.Unmarshal(m.Data, &d)
			json.Unmarshal(m.Data, &text)
			line := m.Type
			switch m.Type {
			case "chat":
				line = "chat " + m.UserID + " " + text
			case "presence":
				line = "presence " + d.UserID + " " + d.Status
			case "join", "leave":
				line = m.Type + " " + d.UserID
			}
			w.mu.Lock()
			w.lines = append(w.lines, line)
			w.mu.Unlock()
		}
	}()
	return ws, w
}

func (w *watcher) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

// waitFor waits (10 s at most) until the lines got so far satisfy ok.
func (w *watcher) waitFor(t *testing.T, what string, ok func([]string) bool) {
	t.Helper()
	require.Eventually(t, func() bool { return ok(w.got()) }, 10*time.Second, 20*time.Millisecond, "%s; got %q", what, w.got())
}

// has reports whether line is among lines after index from.
func has(lines []string, from int, line string) int {
	for i := from; i < len(lines); i++ {
		if lines[i] == line {
			return i
		}
	}
	return -1
}

// The client across a restart of its server (two pods on Redis; the page's
// pod restarts): it gets 1001 with the drain hint and reconnects soon after;
// sends made while it was away are held, then go out in order once it has
// rejoined, and their promises resolve only then; it rejoins from its
// position, so the messages it missed arrive once each, in order, with no
// "unrecovered"; and its "away" status is set again on the new connection.
func TestBrowserClientRecoversBuffersAndRestoresPresenceAcrossRestart(t *testing.T) {
	redis := redistest.Start(t)
	pod := func(id, addr string) Options {
		return Options{Addr: addr, InsecureDevAuth: true, RedisAddrs: []string{redis.Addr}, Handler: realtime.HandlerConfig{PodID: id, DrainWindow: time.Second}}
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	stopA := runAt(t, pod("a", addrA))
	runAt(t, pod("b", addrB))

	bob, seen := watch(t, "ws://"+addrB+"/ws?user=bob")
	require.NoError(t, bob.WriteJSON(map[string]any{"type": "join", "room": "lobby"}))
	say := func(text string) {
		require.NoError(t, bob.WriteJSON(map[string]any{"type": "chat", "room": "lobby", "data": text}))
	}
	seen.waitFor(t, "bob joined", func(l []string) bool { return has(l, 0, "join bob") >= 0 })

	page := browser(t)
	clientPage(t, page, addrA)
	runJS(t, page, `startClient("alice", "alice", { backoffBaseMs: 200, backoffMaxMs: 1000 });
		clients.alice.c.join("lobby"); clients.alice.c.presence("away");`)
	poll(t, page, `clients.alice.rec.joined.includes("lobby new")`)
	seen.waitFor(t, "alice away", func(l []string) bool { return has(l, 0, "presence alice away") >= 0 })
	say("before the restart")
	poll(t, page, `clients.alice.rec.chats.includes("before the restart")`)

	n := stateCount(t, page, "alice")
	stopA()
	s := waitState(t, page, "alice", n, "reconnecting", 1001)
	assert.Contains(t, s.Reason, "reconnect_ms=")
	assert.LessOrEqual(t, s.RetryInMs, 999+500, "the drain hint (0-999 ms) plus jitter, not a backoff")
	assertReconnecting(t, s.Text, "the server is going away (server shutting down)")

	for _, text := range []string{"missed one", "missed two", "missed three"} {
		say(text)
	}
	runJS(t, page, `track("alice", "one", clients.alice.c.send("lobby", "offline one"));
		track("alice", "two", clients.alice.c.send("lobby", "offline two"));`)
	assert.Equal(t, map[string]string{"one": "pending", "two": "pending"}, jsValue[map[string]string](t, page, `clients.alice.rec.sends`))
	assert.Equal(t, 2, jsValue[int](t, page, `clients.alice.c.buffered`))
	mark := len(seen.got())

	runAt(t, pod("a", addrA)) // back on the same address
	poll(t, page, `clients.alice.rec.joined.includes("lobby recovered=true")`)
	poll(t, page, `clients.alice.rec.sends.one === "sent" && clients.alice.rec.sends.two === "sent"`)
	seen.waitFor(t, "alice back: joined, away, then her offline sends", func(l []string) bool {
		j := has(l, mark, "join alice")
		p := has(l, j+1, "presence alice away")
		one := has(l, j+1, "chat alice offline one")
		return j >= 0 && p >= 0 && one >= 0 && has(l, one+1, "chat alice offline two") >= 0
	})
	say("after the restart")
	poll(t, page, `clients.alice.rec.chats.includes("after the restart")`)

	chats := jsValue[[]string](t, page, `clients.alice.rec.chats`)
	assert.Equal(t, []string{"before the restart", "missed one", "missed two", "missed three", "offline one", "offline two", "after the restart"}, chats,
		"what was missed once each and in order, then the buffered sends, then live")
	assert.Empty(t, jsValue[[]string](t, page, `clients.alice.rec.unrecovered`))
	assert.Equal(t, 0, jsValue[int](t, page, `clients.alice.c.buffered`))
	names := stateNames(clientStates(t, page, "alice"))
	// Attempts while the pod is down fail (1006); one that reached it while
	// it drained would be closed with 1001 again.
	assert.Regexp(t, `^connecting,open,reconnecting 1001,(reconnecting 1006,|open,reconnecting 1001,)*open$`, names)
}

// The offline buffer is bounded: a send past bufferMaxMessages or
// bufferMaxBytes is rejected at once with RealtimeError "buffer_full" and
// the others go out after the reconnect (here to a server that restarted
// without the room's history: the client says "unrecovered"); what is still
// buffered when the client is closed is rejected with "closed", as is a send
// after it.
func TestBrowserClientOfflineBufferOverflow(t *testing.T) {
	addr := freeAddr(t)
	opts := Options{Addr: addr, InsecureDevAuth: true, Handler: realtime.HandlerConfig{DrainWindow: time.Second}}
	stop := runAt(t, opts)
	page := browser(t)
	clientPage(t, page, addr)
	runJS(t, page, `startClient("alice", "alice", { bufferMaxMessages: 3, bufferMaxBytes: 400, backoffBaseMs: 200, backoffMaxMs: 1000 });
		clients.alice.c.join("lobby");`)
	poll(t, page, `clients.alice.rec.joined.includes("lobby new")`)
	runJS(t, page, `track("alice", "online", clients.alice.c.send("lobby", "online"))`)
	poll(t, page, `clients.alice.rec.sends.online === "sent" && clients.alice.rec.chats.includes("online")`)

	n := stateCount(t, page, "alice")
	stop()
	waitState(t, page, "alice", n, "reconnecting", 1001)
	runJS(t, page, `const c = clients.alice.c;
		track("alice", "a", c.send("lobby", "a"));
		track("alice", "big", c.send("lobby", "x".repeat(400)));
		track("alice", "b", c.send("lobby", "b"));
		track("alice", "c", c.send("lobby", "c"));
		track("alice", "d", c.send("lobby", "d"));`)
	poll(t, page, `clients.alice.rec.sends.d !== "pending"`)
	assert.Equal(t, map[string]string{"online": "sent", "a": "pending", "big": "rejected buffer_full", "b": "pending", "c": "pending", "d": "rejected buffer_full"},
		jsValue[map[string]string](t, page, `clients.alice.rec.sends`))
	assert.Equal(t, 3, jsValue[int](t, page, `clients.alice.c.buffered`))

	stop = runAt(t, opts) // a new process: the room's history is gone
	poll(t, page, `clients.alice.rec.sends.c === "sent"`)
	poll(t, page, `clients.alice.rec.chats.includes("c")`)
	assert.Equal(t, []string{"online", "a", "b", "c"}, jsValue[[]string](t, page, `clients.alice.rec.chats`))
	assert.Equal(t, []string{"lobby new", "lobby recovered=false"}, jsValue[[]string](t, page, `clients.alice.rec.joined`))
	assert.Equal(t, []string{"lobby history_lost"}, jsValue[[]string](t, page, `clients.alice.rec.unrecovered`))

	n = stateCount(t, page, "alice")
	stop()
	waitState(t, page, "alice", n, "reconnecting", 1001)
	runJS(t, page, `track("alice", "e", clients.alice.c.send("lobby", "e"));
		track("alice", "f", clients.alice.c.direct("someone", "f"));
		clients.alice.c.leave("lobby");`)
	poll(t, page, `clients.alice.rec.sends.e === "rejected left"`)
	runJS(t, page, `clients.alice.c.close(); track("alice", "g", clients.alice.c.send("lobby", "g"));`)
	poll(t, page, `clients.alice.rec.sends.f === "rejected closed" && clients.alice.rec.sends.g === "rejected closed"`)
	s := waitState(t, page, "alice", 0, "closed", 1000)
	assert.Equal(t, "disconnected", s.Text)
}

// Close codes from the server: 3003 (the server API disconnected the user)
// is final; 1008 (rate limit) reconnects with a backoff that grows while
// connections do not last; 1013 (a busy server turning a browser away)
// waits as long as its reconnect_ms hint says.
func TestBrowserClientServerCloseCodes(t *testing.T) {
	page := browser(t)

	t.Run("3003 final", func(t *testing.T) {
		addr := startInProcess(t, Options{InsecureDevAuth: true, APIKey: "k"})
		clientPage(t, page, addr)
		runJS(t, page, `startClient("alice", "alice", { backoffBaseMs: 100 }); clients.alice.c.join("lobby");`)
		poll(t, page, `clients.alice.rec.joined.includes("lobby new")`)
		status, body := post(t, "http://"+addr+"/api/disconnect", "apikey k", `{"user":"alice"}`)
		require.Equal(t, 200, status, body)
		s := waitState(t, page, "alice", 0, "closed", 3003)
		assert.Equal(t, "disconnected by the server; not reconnecting", s.Text)
		runJS(t, page, `track("alice", "after", clients.alice.c.send("lobby", "after"))`)
		time.Sleep(time.Second) // a reconnect would have come by now
		assert.Equal(t, "connecting,open,closed 3003", stateNames(clientStates(t, page, "alice")))
		assert.Equal(t, "rejected closed", jsValue[string](t, page, `clients.alice.rec.sends.after`))
	})

	t.Run("1008 backoff", func(t *testing.T) {
		addr := startInProcess(t, Options{InsecureDevAuth: true, Handler: realtime.HandlerConfig{RateLimit: 2, RateBurst: 2}})
		clientPage(t, page, addr)
		runJS(t, page, `startClient("alice", "alice", { backoffBaseMs: 300, backoffMaxMs: 5000 }); clients.alice.c.join("lobby");`)
		poll(t, page, `clients.alice.rec.joined.includes("lobby new")`)
		flood := `for (let i = 0; i < 10; i++) clients.alice.c.send("lobby", "flood " + i)`
		runJS(t, page, flood)
		first := waitState(t, page, "alice", 0, "reconnecting", 1008)
		assert.Equal(t, "rate limit exceeded", first.Reason)
		assertReconnecting(t, first.Text, "closed by the server's policy (rate limit exceeded)")
		assert.LessOrEqual(t, first.RetryInMs, 300)
		assert.Contains(t, jsValue[[]string](t, page, `clients.alice.rec.errors`), "rate_limited", `the "error" event`)
		poll(t, page, `clients.alice.rec.joined.length === 2 && clients.alice.c.state === "open"`)

		time.Sleep(1500 * time.Millisecond) // the rate limiter refills
		runJS(t, page, flood)
		poll(t, page, `clients.alice.rec.states.filter((s) => s.code === 1008).length === 2`)
		var again clientState
		for _, s := range clientStates(t, page, "alice") {
			if s.Code == 1008 {
				again = s
			}
		}
		assert.Equal(t, first.Attempt+1, again.Attempt, "a connection that did not last does not reset the backoff")
		assert.LessOrEqual(t, again.RetryInMs, 600)
		poll(t, page, `clients.alice.rec.joined.length === 3 && clients.alice.c.state === "open"`)
		runJS(t, page, `clients.alice.c.close()`)
	})

	t.Run("1013 hint", func(t *testing.T) {
		addr := startInProcess(t, Options{InsecureDevAuth: true, Handler: realtime.HandlerConfig{AcceptRate: 0.001, AcceptBurst: 1}})
		clientPage(t, page, addr)
		runJS(t, page, `startClient("alice", "alice", {})`) // takes the only upgrade
		poll(t, page, `clients.alice.c.state === "open"`)
		runJS(t, page, `startClient("bob", "bob", { backoffBaseMs: 10 })`)
		s := waitState(t, page, "bob", 0, "reconnecting", 1013)
		assert.Contains(t, s.Reason, "reconnect_ms=")
		assert.GreaterOrEqual(t, s.RetryInMs, 1000, "the hint (1-3 s), not the 10 ms backoff")
		assert.LessOrEqual(t, s.RetryInMs, 3500)
		assertReconnecting(t, s.Text, "the server is busy (try again later)")
		runJS(t, page, `clients.alice.c.close(); clients.bob.c.close();`)
	})
}

// stallProxy forwards TCP connections to a server until stall, after which
// the connections it has stop carrying anything either way (a dead link
// that never closes); new ones work.
type stallProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []*stallConn
	closed bool
}

type stallConn struct {
	a, b    net.Conn
	stalled atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln}
	t.Cleanup(p.close)
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			c := &stallConn{a: a, b: b}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				a.Close()
				b.Close()
				return
			}
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go c.pipe(a, b)
			go c.pipe(b, a)
		}
	}()
	return p
}

// pipe copies from src to dst until either closes, dropping what comes while
// stalled.
func (c *stallConn) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.stalled.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.a.Close()
	c.b.Close()
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

// stall makes every connection so far a dead link.
func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.stalled.Store(true)
	}
}

// closeStalled closes the stalled connections (so that the server's shutdown
// does not wait on them).
func (p *stallProxy) closeStalled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.stalled.Load() {
			c.a.Close()
			c.b.Close()
		}
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		c.a.Close()
		c.b.Close()
	}
}

// Heartbeat: a link that goes silent without closing (no FIN, no close
// frame: a dead Wi-Fi, a NAT that forgot the flow) is noticed by the
// client's ping going unanswered, and it reconnects and rejoins; a quiet
// but live link is kept (its pings are answered).
func TestBrowserClientHeartbeatTimeout(t *testing.T) {
	addr := startInProcess(t, Options{InsecureDevAuth: true})
	proxy := newStallProxy(t, addr)
	page := browser(t)
	clientPage(t, page, proxy.addr())
	runJS(t, page, `startClient("alice", "alice", { heartbeatIntervalMs: 300, heartbeatTimeoutMs: 400, backoffBaseMs: 100 });
		clients.alice.c.join("lobby");`)
	poll(t, page, `clients.alice.rec.joined.includes("lobby new")`)
	time.Sleep(1500 * time.Millisecond) // five heartbeats on a quiet link
	assert.Equal(t, "connecting,open", stateNames(clientStates(t, page, "alice")), "a live quiet link is kept")

	proxy.stall()
	start := time.Now()
	s := waitState(t, page, "alice", 0, "reconnecting", 4000)
	took := time.Since(start)
	assert.Less(t, took, 2*time.Second, "noticed within the interval and the timeout")
	assertReconnecting(t, s.Text, "no answer from the server (no message in 400 ms after a ping)")
	poll(t, page, `clients.alice.c.state === "open" && clients.alice.rec.joined.length === 2`)
	proxy.closeStalled()
	assert.Equal(t, []string{"lobby new", "lobby recovered=true"}, jsValue[[]string](t, page, `clients.alice.rec.joined`))
	runJS(t, page, `track("alice", "back", clients.alice.c.send("lobby", "back"))`)
	poll(t, page, `clients.alice.rec.chats.includes("back")`)
	assert.Equal(t, "connecting,open,reconnecting 4000,open", stateNames(clientStates(t, page, "alice")))
}

// assertReconnecting checks a "reconnecting" state's text: why, then when.
// With full jitter the delay may round to 0 ms, which the client words
// "now" (one time in 200 with a 100 ms base).
func assertReconnecting(t *testing.T, text, why string) {
	t.Helper()
	assert.Regexp(t, "^"+regexp.QuoteMeta(why)+`; reconnecting (in \d+\.\d s|now)$`, text)
}
