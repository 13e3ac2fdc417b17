package realtime

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// The server API through a real HTTP client, against two pods linked by a
// real Redis.

const testAPIKey = "k3y"

// apiURL serves p's server API (requests need testAPIKey) and returns its
// base URL.
func apiURL(t *testing.T, h *Handler) string {
	t.Helper()
	api := NewAPI(h, APIConfig{Authorize: func(r *http.Request) error {
		if r.Header.Get("Authorization") != "apikey "+testAPIKey {
			return ErrBadUserID // any error: 401
		}
		return nil
	}})
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/api"
}

// call makes one API request with the key and returns the status and the
// decoded JSON body.
func call(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	return callWith(t, method, url, "apikey "+testAPIKey, body)
}

func callWith(t *testing.T, method, url, auth string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	return resp.StatusCode, out
}

// errCode returns the error code of an error body.
func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// aliceTwiceAndBob starts two pods on one Redis, with alice connected to
// both and bob to the second, all three in room "r".
func aliceTwiceAndBob(t *testing.T) (a, b *pod, alice1, alice2, bob *client) {
	t.Helper()
	srv := redistest.Start(t)
	a = startPod(t, "a", redistest.Client(t, srv.Addr))
	b = startPod(t, "b", redistest.Client(t, srv.Addr))
	alice1, alice2 = dial(t, a.url, as("alice")), dial(t, b.url, as("alice"))
	bob = dial(t, b.url, as("bob"))
	for _, c := range []*client{alice1, alice2, bob} {
		c.joinSince("r", nil)
	}
	waitListening(t, "r", a, b)
	return a, b, alice1, alice2, bob
}

func TestAPIPublishToRoomAndUserAcrossPods(t *testing.T) {
	a, _, alice1, alice2, bob := aliceTwiceAndBob(t)
	api := apiURL(t, a.h)

	// To a room: every member on both pods, from "system" or as given, with
	// its place in the room's history.
	status, body := call(t, "POST", api+"/publish", map[string]any{"room": "r", "type": "news", "data": map[string]int{"n": 1}})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.NotEmpty(t, body["id"])
	assert.EqualValues(t, 1, body["offset"])
	assert.NotEmpty(t, body["epoch"])
	for _, c := range []*client{alice1, alice2, bob} {
		m := c.readType("news")
		assert.Equal(t, "system", m.From)
		assert.Equal(t, "r", m.Room)
		assert.EqualValues(t, 1, m.Offset)
		assert.JSONEq(t, `{"n":1}`, string(m.Data))
	}
	status, _ = call(t, "POST", api+"/publish", map[string]any{"room": "r", "type": "news", "data": 2, "from": "backend"})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "backend", bob.readType("news").From)

	// To a user: each of alice's connections, on both pods; not bob.
	status, body = call(t, "POST", api+"/publish", map[string]any{"user": "alice", "type": "notification", "data": "hi"})
	require.Equal(t, http.StatusOK, status, "%v", body)
	for _, c := range []*client{alice1, alice2} {
		m := c.readType(MessageTypeNotification)
		assert.Equal(t, `"hi"`, string(m.Data))
		assert.Empty(t, m.Room)
		assert.Equal(t, body["id"], m.ID)
	}
	bob.send(map[string]any{"type": "ping"})
	assert.Equal(t, MessageTypePong, bob.read().Type, "bob got nothing before his pong")
}

func TestAPIPresenceAcrossPods(t *testing.T) {
	_, b, alice1, alice2, _ := aliceTwiceAndBob(t)
	api := apiURL(t, b.h)

	want := map[string]any{"users": []any{
		map[string]any{"user_id": "alice", "connections": 2.0, "status": "online"},
		map[string]any{"user_id": "bob", "connections": 1.0, "status": "online"},
	}}
	require.Eventually(t, func() bool {
		status, body := call(t, "GET", api+"/presence?room=r", nil)
		return status == http.StatusOK && assert.ObjectsAreEqual(want, body)
	}, 5*time.Second, 20*time.Millisecond, "the room's users, counted on both pods")
	status, body := call(t, "GET", api+"/presence?user=alice", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]any{"online": true, "connections": 2.0}, body)

	alice1.ws.Close()
	require.Eventually(t, func() bool {
		_, body := call(t, "GET", api+"/presence?user=alice", nil)
		return assert.ObjectsAreEqual(map[string]any{"online": true, "connections": 1.0}, body)
	}, 5*time.Second, 20*time.Millisecond)
	alice2.ws.Close()
	require.Eventually(t, func() bool {
		_, body := call(t, "GET", api+"/presence?user=alice", nil)
		return assert.ObjectsAreEqual(map[string]any{"online": false, "connections": 0.0}, body)
	}, 5*time.Second, 20*time.Millisecond)
	_, body = call(t, "GET", api+"/presence?room=r", nil)
	assert.Len(t, body["users"], 1, "bob alone: %v", body)
}

func TestAPIDisconnectAcrossPods(t *testing.T) {
	a, b, alice1, alice2, bob := aliceTwiceAndBob(t)
	api := apiURL(t, a.h)

	status, body := call(t, "POST", api+"/disconnect", map[string]any{"user": "alice"})
	require.Equal(t, http.StatusOK, status, "%v", body)
	assert.Equal(t, map[string]any{}, body)
	assert.Equal(t, int(CloseForbidden), alice1.closeCode())
	assert.Equal(t, int(CloseForbidden), alice2.closeCode())
	bob.send(map[string]any{"type": "ping"})
	assert.Equal(t, MessageTypePong, bob.readType(MessageTypePong).Type, "bob stays (after alice's leave events)")
	assert.EqualValues(t, 1, a.h.Stats().Disconnected)
	assert.EqualValues(t, 1, b.h.Stats().Disconnected)
}

func TestAPIAuthAndErrors(t *testing.T) {
	hub := NewHub(quietLogger())
	h := NewHandler(hub, quietLogger(), HandlerConfig{})
	api := apiURL(t, h)

	for _, auth := range []string{"", "apikey wrong", "Bearer " + testAPIKey} {
		status, body := callWith(t, "POST", api+"/publish", auth, map[string]any{"room": "r", "type": "t"})
		assert.Equal(t, http.StatusUnauthorized, status, "auth %q", auth)
		assert.Equal(t, ErrCodeUnauthorized, errCode(body))
	}
	cases := []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"POST", "/publish", "{not json", 400, ErrCodeBadJSON},
		{"POST", "/publish", map[string]any{"type": "t"}, 400, ErrCodeBadData},
		{"POST", "/publish", map[string]any{"room": "r", "user": "u", "type": "t"}, 400, ErrCodeBadData},
		{"POST", "/publish", map[string]any{"room": "bad room", "type": "t"}, 400, ErrCodeBadRoom},
		{"POST", "/publish", map[string]any{"room": "r", "type": "Bad Type"}, 400, ErrCodeUnknownType},
		{"POST", "/publish", map[string]any{"user": "a\nb", "type": "t"}, 400, ErrCodeBadData},
		{"GET", "/publish", nil, 405, apiCodeMethod},
		{"GET", "/presence", nil, 400, ErrCodeBadData},
		{"GET", "/presence?room=r&user=u", nil, 400, ErrCodeBadData},
		{"GET", "/presence?room=%7Bx%7D", nil, 400, ErrCodeBadRoom},
		{"POST", "/disconnect", map[string]any{}, 400, ErrCodeBadData},
		{"GET", "/nothing", nil, 404, ErrCodeNotFound},
	}
	for _, tc := range cases {
		status, body := call(t, tc.method, api+tc.path, tc.body)
		assert.Equal(t, tc.status, status, "%s %s %v", tc.method, tc.path, tc.body)
		assert.Equal(t, tc.code, errCode(body), "%s %s %v", tc.method, tc.path, tc.body)
	}
	big := map[string]any{"room": "r", "type": "t", "data": string(make([]byte, 128<<10))}
	status, body := call(t, "POST", api+"/publish", big)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
	assert.Equal(t, apiCodeTooLarge, errCode(body))
}

// One pod, no Redis: the API works on the pod's own connections.
func TestAPISinglePod(t *testing.T) {
	ts := newTestServer(t, httpDoor, HandlerConfig{Authenticate: userAuth})
	api := apiURL(t, ts.handler)
	alice := dial(t, ts.url, as("alice"))
	alice.join("r")
	status, body := call(t, "POST", api+"/publish", map[string]any{"room": "r", "type": "news"})
	require.Equal(t, http.StatusOK, status)
	assert.EqualValues(t, 1, body["offset"])
	assert.Equal(t, "news", alice.readType("news").Type)
	status, body = call(t, "GET", api+"/presence?room=r", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]any{"users": []any{map[string]any{"user_id": "alice", "connections": 1.0, "status": "online"}}}, body)
	status, _ = call(t, "POST", api+"/publish", map[string]any{"user": "alice", "type": "note"})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "note", alice.readType("note").Type)
	status, _ = call(t, "POST", api+"/disconnect", map[string]any{"user": "alice"})
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, int(CloseForbidden), alice.closeCode())
}
