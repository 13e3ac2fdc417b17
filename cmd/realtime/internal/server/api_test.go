package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// post sends body to url with auth (if any) and returns the status and body.
func post(t *testing.T, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewBufferString(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestAPIKeyGuardsTheAPI(t *testing.T) {
	off := startInProcess(t, Options{InsecureDevAuth: true})
	status, _ := post(t, "http://"+off+"/api/publish", "apikey k", `{"room":"r","type":"t"}`)
	assert.Equal(t, http.StatusNotFound, status, "no -api-key: no API")

	on := startInProcess(t, Options{InsecureDevAuth: true, APIKey: "k"})
	for _, auth := range []string{"", "apikey other", "Bearer k"} {
		status, body := post(t, "http://"+on+"/api/publish", auth, `{"room":"r","type":"t"}`)
		assert.Equal(t, http.StatusUnauthorized, status, "auth %q", auth)
		assert.JSONEq(t, `{"error":{"code":"unauthorized","message":"missing or wrong API key"}}`, body)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+on+"/ws?user=alice", nil)
	require.NoError(t, err)
	defer ws.Close()
	var m map[string]any
	require.NoError(t, ws.ReadJSON(&m)) // connected
	status, body := post(t, "http://"+on+"/api/publish", "APIKEY k", `{"user":"alice","type":"note","data":{"x":1}}`)
	require.Equal(t, http.StatusOK, status, body)
	require.NoError(t, ws.ReadJSON(&m))
	assert.Equal(t, "note", m["type"])
	assert.Equal(t, "system", m["from"])
}

// A JWT's exp closes the socket with 3000; a refresh with a later token of
// the same user keeps it open.
func TestJWTExpiryAndRefresh(t *testing.T) {
	secret := []byte("s3cret")
	addr := startInProcess(t, Options{JWTSecret: secret})
	short, err := MintToken(secret, "alice", 1500*time.Millisecond)
	require.NoError(t, err)

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+short, nil)
	require.NoError(t, err)
	defer ws.Close()
	var greeting struct {
		Data struct {
			UserID    string `json:"user_id"`
			ExpiresAt int64  `json:"expires_at"`
		}
	}
	require.NoError(t, ws.ReadJSON(&greeting))
	assert.Equal(t, "alice", greeting.Data.UserID)
	assert.NotZero(t, greeting.Data.ExpiresAt)
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3000, ce.Code)
	assert.Equal(t, "token expired", ce.Text)

	ws2, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+mustMint(t, secret, "alice", 1500*time.Millisecond), nil)
	require.NoError(t, err)
	defer ws2.Close()
	require.NoError(t, ws2.ReadJSON(&greeting))
	send := func(v any) {
		b, _ := json.Marshal(v)
		require.NoError(t, ws2.WriteMessage(websocket.TextMessage, b))
	}
	send(map[string]any{"type": "refresh", "data": map[string]string{"token": mustMint(t, secret, "mallory", time.Hour)}})
	var m struct {
		Type string
		Data map[string]any
	}
	require.NoError(t, ws2.ReadJSON(&m))
	assert.Equal(t, "error", m.Type)
	assert.Equal(t, "forbidden", m.Data["code"])
	send(map[string]any{"type": "refresh", "data": map[string]string{"token": mustMint(t, secret, "alice", time.Hour)}})
	require.NoError(t, ws2.ReadJSON(&m))
	assert.Equal(t, "refresh", m.Type)
	assert.Equal(t, "alice", m.Data["user_id"])
	time.Sleep(2 * time.Second) // past the first token's exp
	send(map[string]any{"type": "ping"})
	require.NoError(t, ws2.ReadJSON(&m))
	assert.Equal(t, "pong", m.Type, "still open after the first token's exp")
}

func mustMint(t *testing.T, secret []byte, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := MintToken(secret, user, ttl)
	require.NoError(t, err)
	return tok
}
