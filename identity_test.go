package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Identity: who sent what, hooks that see the whole identity, and tokens
// that expire.

func TestRelayedMessagesCarryUserID(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	alice, bob := dial(t, a.url, as("alice")), dial(t, b.url, as("bob"))
	alice.joinSince("r", nil)
	bob.joinSince("r", nil)
	waitListening(t, "r", a, b)

	alice.send(map[string]any{"type": "chat", "room": "r", "data": "hi"})
	m := bob.readType(MessageTypeChat)
	assert.Equal(t, "alice", m.UserID, "the sender's user, across pods")
	assert.Equal(t, alice.id, m.From, "from stays the connection")
	assert.Equal(t, "alice", alice.readType(MessageTypeChat).UserID, "her own copy")
	bob.send(map[string]any{"type": "chat", "to": alice.id, "data": "psst"})
	m = alice.readType(MessageTypeChat)
	assert.Equal(t, "bob", m.UserID)
	assert.Equal(t, bob.id, m.From)
}

func TestAnonymousMessagesHaveNoUserID(t *testing.T) {
	ts := newTestServer(t, httpDoor, HandlerConfig{})
	a, b := dial(t, ts.url, nil), dial(t, ts.url, nil)
	a.join("r")
	b.join("r")
	require.NoError(t, a.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","room":"r","data":1}`)))
	_, raw := readRawType(t, b, MessageTypeChat)
	assert.NotContains(t, raw, "user_id", "omitted for anonymous senders: %s", raw)
}

// readRawType reads until a message of typ and returns it with its JSON.
func readRawType(t *testing.T, c *client, typ string) (Message, string) {
	t.Helper()
	for range 50 {
		c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, raw, err := c.ws.ReadMessage()
		require.NoError(t, err)
		var m Message
		require.NoError(t, json.Unmarshal(raw, &m))
		if m.Type == typ {
			return m, string(raw)
		}
	}
	t.Fatalf("no %q message", typ)
	return Message{}, ""
}

// identityAuth authenticates "X-User" with claims, and an expiry of
// "X-TTL" (a duration) if given.
func identityAuth(r *http.Request) (*Identity, error) {
	u := r.Header.Get("X-User")
	if u == "" {
		return nil, errors.New("no user")
	}
	id := &Identity{UserID: u, Claims: map[string]any{"role": r.Header.Get("X-Role")}}
	if ttl, err := time.ParseDuration(r.Header.Get("X-TTL")); err == nil {
		id.ExpiresAt = time.Now().Add(ttl)
	}
	return id, nil
}

func TestContextHooksSeeTheIdentity(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	cfg := HandlerConfig{
		AuthenticateIdentity: identityAuth,
		AuthorizeJoinContext: func(ctx context.Context, id *Identity, room string) error {
			_, hasDeadline := ctx.Deadline()
			mu.Lock()
			seen = append(seen, id.UserID+":"+id.Claims["role"].(string))
			mu.Unlock()
			if !hasDeadline || (room == "admins" && id.Claims["role"] != "admin") {
				return errors.New("no")
			}
			return nil
		},
		AuthorizePublishContext: func(_ context.Context, id *Identity, room, typ string) error {
			if typ == "announce" && id.Claims["role"] != "admin" {
				return errors.New("no")
			}
			return nil
		},
		AuthorizeJoin: func(user, room string) error { // the old hook still runs
			if room == "old-forbidden" {
				return errors.New("no")
			}
			return nil
		},
	}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		admin := dial(t, ts.url, http.Header{"X-User": {"ann"}, "X-Role": {"admin"}})
		user := dial(t, ts.url, http.Header{"X-User": {"bo"}, "X-Role": {"member"}})
		admin.join("admins")
		user.send(map[string]any{"type": "join", "room": "admins"})
		assert.Equal(t, ErrCodeForbidden, user.readError())
		user.send(map[string]any{"type": "join", "room": "old-forbidden"})
		assert.Equal(t, ErrCodeForbidden, user.readError())
		user.join("r")
		user.send(map[string]any{"type": "announce", "room": "r", "data": 1})
		assert.Equal(t, ErrCodeForbidden, user.readError())
		admin.join("r")
		admin.send(map[string]any{"type": "announce", "room": "r", "data": 1})
		assert.Equal(t, "ann", user.readType("announce").UserID)
		mu.Lock()
		defer mu.Unlock()
		assert.Contains(t, seen, "ann:admin")
		assert.Contains(t, seen, "bo:member")
	})
}

// refreshHook accepts tokens "<user>:<ttl>".
func refreshHook(_ context.Context, token string) (*Identity, error) {
	user, ttl, ok := strings.Cut(token, ":")
	d, err := time.ParseDuration(ttl)
	if !ok || err != nil {
		return nil, errors.New("bad token")
	}
	return &Identity{UserID: user, ExpiresAt: time.Now().Add(d)}, nil
}

func TestTokenExpiryClosesWith3000(t *testing.T) {
	forEachDoor(t, HandlerConfig{AuthenticateIdentity: identityAuth}, func(t *testing.T, ts *testServer) {
		c := dial(t, ts.url, http.Header{"X-User": {"u"}, "X-TTL": {"300ms"}})
		start := time.Now()
		c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		var err error
		for err == nil {
			_, _, err = c.ws.ReadMessage()
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, int(CloseUnauthorized), ce.Code)
		assert.Equal(t, "token expired", ce.Text)
		assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "not before exp")
		assert.EqualValues(t, 1, ts.handler.Stats().Expired)

		// No expiry: no timer (c's went when it fired), and the connection lives.
		d := dial(t, ts.url, http.Header{"X-User": {"v"}})
		d.send(map[string]any{"type": "ping"})
		assert.Equal(t, MessageTypePong, d.read().Type)
		armed := ts.handler.expiry.armed()
		assert.Zero(t, armed, "a timer for a connection without expiry")
	})
}

func TestTokenRefresh(t *testing.T) {
	cfg := HandlerConfig{AuthenticateIdentity: identityAuth, Refresh: refreshHook}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		c := dial(t, ts.url, http.Header{"X-User": {"u"}, "X-TTL": {"400ms"}})
		start := time.Now()
		// Another user's token, a bad one, none: refused; the expiry stands.
		c.send(map[string]any{"type": "refresh", "data": map[string]string{"token": "mallory:1h"}})
		assert.Equal(t, ErrCodeForbidden, c.readError())
		c.send(map[string]any{"type": "refresh", "data": map[string]string{"token": "garbage"}})
		assert.Equal(t, ErrCodeUnauthorized, c.readError())
		c.send(map[string]any{"type": "refresh", "data": map[string]string{}})
		assert.Equal(t, ErrCodeBadData, c.readError())

		c.send(map[string]any{"type": "refresh", "data": map[string]string{"token": "u:1200ms"}})
		m := c.readType(MessageTypeRefresh)
		var d RefreshData
		require.NoError(t, json.Unmarshal(m.Data, &d))
		assert.Equal(t, "u", d.UserID)
		assert.InDelta(t, time.Now().Add(1200*time.Millisecond).Unix(), d.ExpiresAt, 1)

		// Alive past the first expiry, closed at the second.
		time.Sleep(time.Until(start.Add(600 * time.Millisecond)))
		c.send(map[string]any{"type": "ping"})
		assert.Equal(t, MessageTypePong, c.readType(MessageTypePong).Type)
		assert.Equal(t, int(CloseUnauthorized), c.closeCode())
		assert.GreaterOrEqual(t, time.Since(start), 1100*time.Millisecond)
	})
}

func TestRefreshWithoutHookIsForbidden(t *testing.T) {
	ts := newTestServer(t, httpDoor, HandlerConfig{AuthenticateIdentity: identityAuth})
	c := dial(t, ts.url, http.Header{"X-User": {"u"}})
	c.send(map[string]any{"type": "refresh", "data": map[string]string{"token": "u:1h"}})
	assert.Equal(t, ErrCodeForbidden, c.readError())
}

func TestGreetingCarriesExpiry(t *testing.T) {
	ts := newTestServer(t, httpDoor, HandlerConfig{AuthenticateIdentity: identityAuth})
	ws, _, err := websocket.DefaultDialer.Dial(ts.url, http.Header{"X-User": {"u"}, "X-TTL": {"1h"}})
	require.NoError(t, err)
	defer ws.Close()
	var m Message
	require.NoError(t, ws.ReadJSON(&m))
	var d ConnectedData
	require.NoError(t, json.Unmarshal(m.Data, &d))
	assert.InDelta(t, time.Now().Add(time.Hour).Unix(), d.ExpiresAt, 2)
	assert.Equal(t, "u", d.UserID)
}
