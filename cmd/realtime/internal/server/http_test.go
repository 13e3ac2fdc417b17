package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startInProcess runs Run on a free port and returns its address.
func startInProcess(t *testing.T, opts Options) string {
	t.Helper()
	opts.Addr = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- Run(ctx, opts, slog.New(slog.DiscardHandler), func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return opts.Addr
}

func TestJWTAuth(t *testing.T) {
	secret := []byte("s3cret")
	addr := startInProcess(t, Options{JWTSecret: secret})
	sign := func(claims jwt.RegisteredClaims, key []byte, method jwt.SigningMethod) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		require.NoError(t, err)
		return s
	}
	valid := sign(jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, secret, jwt.SigningMethodHS256)

	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", http.Header{"Authorization": {"Bearer " + valid}})
	require.NoError(t, err)
	var m struct {
		Data struct {
			UserID string `json:"user_id"`
		}
	}
	require.NoError(t, c.ReadJSON(&m))
	assert.Equal(t, "alice", m.Data.UserID, "the user ID is the token's subject")
	c.Close()
	// Regression (issue 9, defect 10): the scheme is case-insensitive.
	c, _, err = websocket.DefaultDialer.Dial("ws://"+addr+"/ws", http.Header{"Authorization": {"bearer " + valid}})
	require.NoError(t, err)
	c.Close()
	c, _, err = websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+valid, nil) // browsers: query parameter
	require.NoError(t, err)
	c.Close()

	for name, token := range map[string]string{
		"none":         "",
		"expired":      sign(jwt.RegisteredClaims{Subject: "a", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}, secret, jwt.SigningMethodHS256),
		"no expiry":    sign(jwt.RegisteredClaims{Subject: "a"}, secret, jwt.SigningMethodHS256),
		"wrong secret": sign(jwt.RegisteredClaims{Subject: "a", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, []byte("other"), jwt.SigningMethodHS256),
		"no subject":   sign(jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, secret, jwt.SigningMethodHS256),
		"garbage":      "not.a.token",
	} {
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+token, nil)
		require.Error(t, err, name)
		require.NotNil(t, resp, name)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	addr := startInProcess(t, Options{InsecureDevAuth: true})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?user=u", nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WriteJSON(map[string]string{"type": "join", "room": "r"}))
	require.NoError(t, c.WriteJSON(map[string]any{"type": "chat", "room": "r", "data": 1}))
	var m map[string]any
	for m["type"] != "chat" {
		require.NoError(t, c.ReadJSON(&m))
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	assert.Equal(t, http.StatusOK, code)
	for _, want := range []string{"realtime_connections 1", "realtime_rooms 1", "realtime_messages_in_total 2",
		"realtime_fanout_seconds_bucket", "realtime_slow_consumer_disconnects_total 0", "go_goroutines"} {
		assert.Contains(t, body, want)
	}
	code, _ = get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, _ = get("/readyz") // no Redis: ready
	assert.Equal(t, http.StatusOK, code)
	code, body = get("/")
	assert.Equal(t, http.StatusOK, code)
	assert.True(t, strings.Contains(body, "RealtimeClient"), "the demo page")
}

// Regression (issue 9, defect 5): the debug endpoints (/debug/stats?gc=1
// forces a collection) are served on the admin listener only.
func TestDebugOnlyOnAdminListener(t *testing.T) {
	admin := freeAddr(t)
	addr := startInProcess(t, Options{AdminAddr: admin, Pprof: true})
	status := func(url string) int {
		resp, err := http.Get(url)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/debug/stats", "/debug/stats?gc=1", "/debug/pprof/"} {
		assert.Equal(t, http.StatusNotFound, status("http://"+addr+path), "public %s", path)
		assert.Equal(t, http.StatusOK, status("http://"+admin+path), "admin %s", path)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		assert.Equal(t, http.StatusOK, status("http://"+addr+path), "public %s", path)
		assert.Equal(t, http.StatusOK, status("http://"+admin+path), "admin %s", path)
	}
}

// Regression (issue 9, defects 2 and 4): a client that sent half a request
// does not make shutdown fail (Run returned an error after 5 s, and the
// process exited with status 1), and headers past 16 KiB get 431.
func TestHalfRequestAndBigHeaders(t *testing.T) {
	opts := Options{Addr: freeAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- Run(ctx, opts, slog.New(slog.DiscardHandler), func() { close(ready) }) }()
	<-ready

	_, resp, err := websocket.DefaultDialer.Dial("ws://"+opts.Addr+"/ws", http.Header{"X-Big": {strings.Repeat("b", 20<<10)}})
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	half, err := net.Dial("tcp", opts.Addr)
	require.NoError(t, err)
	defer half.Close()
	_, err = half.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)
	c, _, err := websocket.DefaultDialer.Dial("ws://"+opts.Addr+"/ws", nil)
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // the half request is being read
	cancel()
	assert.NoError(t, <-done, "a half request is no reason to fail")
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, websocket.CloseGoingAway, ce.Code)
			break
		}
	}
}
