package realtime

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// pod is one server of a deployment: hub, handler and Redis broadcaster.
type pod struct {
	name string
	hub  *ShardedHub
	rb   *RedisBroadcaster
	h    *Handler
	url  string
	stop func()
}

func startPod(t *testing.T, name string, client rueidis.Client, opts ...BroadcasterOption) *pod {
	t.Helper()
	return startPodWith(t, name, client, HandlerConfig{}, opts...)
}

// startPodWith is startPod with a handler configuration (Broadcaster,
// Authenticate and, unless set, RateLimit and PresenceDebounce are filled
// in).
func startPodWith(t *testing.T, name string, client rueidis.Client, cfg HandlerConfig, opts ...BroadcasterOption) *pod {
	t.Helper()
	hub := NewHub(quietLogger())
	rb := NewRedisBroadcaster(client, hub, quietLogger(), append([]BroadcasterOption{WithPodID(name)}, opts...)...)
	cfg.Broadcaster, cfg.Authenticate = rb, userAuth
	if cfg.RateLimit == 0 {
		cfg.RateLimit = -1
	}
	if cfg.PresenceDebounce == 0 {
		cfg.PresenceDebounce = 100 * time.Millisecond // the debounce's own tests set theirs
	}
	h := NewHandler(hub, quietLogger(), cfg)
	require.Equal(t, name, h.Config().PodID, "the handler adopts the broadcaster's pod ID")
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, rbDone := make(chan struct{}), make(chan struct{})
	go func() { hub.Run(ctx); close(hubDone) }()
	go func() { rb.Run(ctx); close(rbDone) }()
	srv := httptest.NewServer(h.Routes())
	p := &pod{name: name, hub: hub, rb: rb, h: h, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-hubDone
		<-rbDone
		srv.Close()
	}
	t.Cleanup(p.stop)
	require.Eventually(t, func() bool { return rb.Ready() == nil }, 10*time.Second, 20*time.Millisecond, "pod %s ready", name)
	return p
}

// waitListening waits until every pod hears room from the others.
func waitListening(t *testing.T, room string, pods ...*pod) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, p := range pods {
			if !p.rb.Listening(room) {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
}

// readChats reads chat messages until "end" and returns their data.
func readChats(c *client) []string {
	c.t.Helper()
	var got []string
	for {
		m := c.readType(MessageTypeChat)
		if string(m.Data) == `"end"` {
			return got
		}
		got = append(got, string(m.Data))
	}
}

func crossPodRooms(t *testing.T, clients func(i int) rueidis.Client, n int) {
	var pods []*pod
	for i := range n {
		pods = append(pods, startPod(t, fmt.Sprintf("pod%d", i), clients(i)))
	}
	// Two clients on the first pod, one on each other pod, all in "r".
	var members []*client
	for i, p := range pods {
		members = append(members, dial(t, p.url, as(fmt.Sprint("user", i))))
		if i == 0 {
			members = append(members, dial(t, p.url, as("user0b")))
		}
	}
	for _, m := range members {
		// Acknowledged before anyone sends: a join of a room new to its pod
		// waits for a read from Redis, and a chat sent before it lands is
		// refused with not_in_room (the test once lost messages 0-9 so).
		m.joinSince("r", nil)
	}
	waitListening(t, "r", pods...)
	// Every pod delivers every message exactly once, in publish order.
	const count = 50
	sender := members[0]
	for i := range count {
		sender.send(map[string]any{"type": "chat", "room": "r", "data": i})
	}
	sender.send(map[string]any{"type": "chat", "room": "r", "data": "end"})
	want := make([]string, count)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	for i, m := range members {
		assert.Equal(t, want, readChats(m), "member %d", i)
	}

	// A direct message to a connection on another pod.
	last := members[len(members)-1]
	sender.send(map[string]any{"type": "chat", "to": last.id, "data": "psst"})
	dm := last.readType(MessageTypeChat)
	assert.Equal(t, `"psst"`, string(dm.Data))
	assert.Equal(t, sender.id, dm.From)
	// To a connection that does not exist on the sender's own pod: an error.
	sender.send(map[string]any{"type": "chat", "to": pods[0].name + ".999999", "data": 1})
	assert.Equal(t, ErrCodeNotFound, sender.readError())

	// Presence and leave events cross pods: the last member goes, the
	// first pod's members hear it.
	last.ws.Close()
	ev := members[1].readType(MessageTypeLeave)
	assert.Contains(t, string(ev.Data), fmt.Sprintf(`"user%d"`, n-1))
	ev = members[1].readType(MessageTypePresence)
	assert.Contains(t, string(ev.Data), `"offline"`)
	for _, p := range pods {
		st := p.rb.Stats()
		assert.Zero(t, st.Dropped)
		assert.Zero(t, st.PublishErrors)
	}
}

func TestCrossPodTwoPods(t *testing.T) {
	srv := redistest.Start(t)
	crossPodRooms(t, func(int) rueidis.Client { return redistest.Client(t, srv.Addr) }, 2)
}

func TestCrossPodThreePods(t *testing.T) {
	srv := redistest.Start(t)
	crossPodRooms(t, func(int) rueidis.Client { return redistest.Client(t, srv.Addr) }, 3)
}

// The same over a 3-master Redis Cluster: sharded pub/sub, hash-tagged
// channels, no command across slots.
func TestCrossPodCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	crossPodRooms(t, func(i int) rueidis.Client { return redistest.Client(t, addrs[i%len(addrs)]) }, 3)
}

// Redis killed mid-stream: publishes fail with an error to the sender,
// Ready turns false; without history local delivery goes on, with history
// (the default) nobody gets a message Redis did not take; when Redis is
// back, cross-pod delivery resumes by itself and Ready is nil again.
// Nothing leaks.
func TestRedisOutage(t *testing.T) {
	t.Run("history=false", func(t *testing.T) { redisOutage(t, false) })
	t.Run("history=true", func(t *testing.T) { redisOutage(t, true) })
}

func redisOutage(t *testing.T, keep bool) {
	before := runtime.NumGoroutine()
	srv := redistest.Start(t)
	var opts []BroadcasterOption
	if !keep {
		opts = append(opts, WithHistory(-1, 0))
	}
	a := startPod(t, "a", redistest.Client(t, srv.Addr), opts...)
	b := startPod(t, "b", redistest.Client(t, srv.Addr), opts...)
	a1, a2 := dial(t, a.url, as("a1")), dial(t, a.url, as("a2"))
	b1 := dial(t, b.url, as("b1"))
	for _, c := range []*client{a1, a2, b1} {
		c.send(map[string]any{"type": "join", "room": "r"})
	}
	waitListening(t, "r", a, b)
	a1.send(map[string]any{"type": "chat", "room": "r", "data": "before"})
	for _, c := range []*client{a2, b1} {
		assert.Equal(t, `"before"`, string(c.readType(MessageTypeChat).Data))
	}

	srv.Kill()
	require.Eventually(t, func() bool { return a.rb.Ready() != nil && b.rb.Ready() != nil }, 10*time.Second, 50*time.Millisecond,
		"Ready reports the broken link")
	a1.send(map[string]any{"type": "chat", "room": "r", "data": "during"})
	if !keep {
		assert.Equal(t, `"during"`, string(a2.readType(MessageTypeChat).Data), "local delivery goes on")
	}
	assert.Equal(t, ErrCodePublishFailed, a1.readError(), "the sender hears the publish failed")
	assert.GreaterOrEqual(t, a.rb.Stats().PublishErrors, uint64(1))
	assert.GreaterOrEqual(t, a.h.Stats().PublishErrors, uint64(1))

	srv.Restart()
	back := time.Now()
	require.Eventually(t, func() bool { return a.rb.Ready() == nil && b.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond,
		"Ready comes back")
	waitListening(t, "r", a, b)
	// Listening can run ahead of rueidis's resubscription by a moment (it
	// resubscribes without reporting the drop): probe until b hears a.
	for i := 0; ; i++ {
		a1.send(map[string]any{"type": "chat", "room": "r", "data": fmt.Sprint("probe", i)})
		b1.ws.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, p, err := b1.ws.ReadMessage()
		if err == nil && strings.Contains(string(p), `"probe`) {
			break
		}
		require.Less(t, i, 50, "b hears a again after Redis came back")
		if err != nil { // a read deadline leaves a gorilla connection failed: dial again
			b1 = dial(t, b.url, as("b1"))
			b1.join("r")
		}
	}
	t.Logf("pub/sub delivering again %s after Redis came back", time.Since(back).Round(time.Millisecond))
	a1.send(map[string]any{"type": "chat", "room": "r", "data": "after"})
	for {
		m := b1.readType(MessageTypeChat)
		if string(m.Data) == `"after"` {
			break
		}
		require.NotEqual(t, `"during"`, string(m.Data), "what could not be published never arrives late")
	}
	if keep {
		for { // a2 missed nothing and got no "during"
			m := a2.readType(MessageTypeChat)
			require.NotEqual(t, `"during"`, string(m.Data))
			if string(m.Data) == `"after"` {
				break
			}
		}
	}
	assert.GreaterOrEqual(t, b.rb.Stats().Subscriptions, uint64(4), "resubscribed after the restart")

	for _, c := range []*client{a1, a2, b1} {
		c.ws.Close()
	}
	a.stop()
	b.stop()
	assertNoGoroutineLeak(t, before+8) // rueidis keeps its clients' background goroutines until Close
}

// Who is online and who is in a room, asked on any pod, across pods; a pod
// that stops stops counting at once, and entries come back after Redis
// restarts empty. (A pod whose process is killed: cmd/realtime/internal/server's
// TestKilledPodLeavesNoGhost.)
func TestCrossPodPresence(t *testing.T) {
	srv := redistest.Start(t)
	ttl := WithPresenceTTL(1500 * time.Millisecond)
	a := startPod(t, "a", redistest.Client(t, srv.Addr), ttl)
	b := startPod(t, "b", redistest.Client(t, srv.Addr), ttl)
	c := startPod(t, "c", redistest.Client(t, srv.Addr), ttl)
	ctx := context.Background()
	users := func(p *pod, room string) []string {
		u, err := p.rb.RoomUsers(ctx, room)
		require.NoError(t, err)
		slices.Sort(u)
		return u
	}
	online := func(p *pod, user string) bool {
		ok, err := p.rb.Online(ctx, user)
		require.NoError(t, err)
		return ok
	}

	alice := dial(t, a.url, as("alice"))
	bob := dial(t, b.url, as("bob"))
	carol := dial(t, c.url, as("carol"))
	for _, cl := range []*client{alice, bob, carol} {
		cl.join("r")
	}
	require.Eventually(t, func() bool { return slices.Equal(users(a, "r"), []string{"alice", "bob", "carol"}) }, 5*time.Second, 20*time.Millisecond)
	assert.True(t, online(c, "bob"))
	assert.False(t, online(a, "nobody"))

	bob.send(map[string]any{"type": "leave", "room": "r"})
	require.Eventually(t, func() bool { return slices.Equal(users(c, "r"), []string{"alice", "carol"}) }, 5*time.Second, 20*time.Millisecond)
	bob.join("r")
	require.Eventually(t, func() bool { return slices.Equal(users(c, "r"), []string{"alice", "bob", "carol"}) }, 5*time.Second, 20*time.Millisecond)

	// Redis restarts empty: the pods write their entries again.
	srv.Kill()
	srv.Restart()
	require.Eventually(t, func() bool {
		u, err := a.rb.RoomUsers(ctx, "r")
		slices.Sort(u)
		return err == nil && slices.Equal(u, []string{"alice", "bob", "carol"})
	}, 10*time.Second, 50*time.Millisecond, "entries rewritten after Redis came back empty")

	// Pod c stops cleanly: carol stops counting at once (well within the TTL).
	c.stop()
	require.Eventually(t, func() bool { return !online(a, "carol") }, time.Second, 20*time.Millisecond)

	assert.True(t, online(a, "alice"))
}
