package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// userHeader authenticates as the X-User header says (tests only).
func userAuth(r *http.Request) (string, error) {
	if u := r.Header.Get("X-User"); u != "" {
		return u, nil
	}
	if u := r.URL.Query().Get("user"); u != "" {
		return u, nil
	}
	return "", errors.New("no user")
}

func as(user string) http.Header { return http.Header{"X-User": {user}} }

// forEachDoor runs fn against a fresh server on each door.
func forEachDoor(t *testing.T, cfg HandlerConfig, fn func(t *testing.T, ts *testServer)) {
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			fn(t, newTestServer(t, d, cfg))
		})
	}
}

func TestConnectedMessage(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth, PodID: "pod7"}, func(t *testing.T, ts *testServer) {
		ws, _, err := websocket.DefaultDialer.Dial(ts.url, as("alice"))
		require.NoError(t, err)
		defer ws.Close()
		_, b, err := ws.ReadMessage()
		require.NoError(t, err)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(b, &raw))
		assert.Equal(t, "system", raw["type"])
		assert.Equal(t, "system", raw["from"])
		data := raw["data"].(map[string]any)
		assert.Equal(t, "connected", data["event"])
		assert.Equal(t, "alice", data["user_id"])
		assert.True(t, strings.HasPrefix(data["connection_id"].(string), "pod7."), "ID names its pod: %v", data["connection_id"])
	})
}

func TestJoinLeaveEvents(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, as("alice"))
		b := dial(t, ts.url, as("bob"))
		a.join("r")
		b.send(map[string]any{"type": "join", "room": "r"})
		for _, c := range []*client{a, b} { // the joiner included, as its acknowledgement
			m := c.readType(MessageTypeJoin)
			assert.Equal(t, "system", m.From)
			assert.Equal(t, "r", m.Room)
			var d JoinLeaveData
			require.NoError(t, json.Unmarshal(m.Data, &d))
			assert.Equal(t, JoinLeaveData{Room: "r", UserID: "bob"}, d)
		}
		b.join("r") // joining twice: acknowledged again, no second membership
		assert.Equal(t, 2, ts.hub.RoomCount("r"))

		b.send(map[string]any{"type": "leave", "room": "r"})
		for _, c := range []*client{a, b} {
			m := c.readType(MessageTypeLeave)
			var d JoinLeaveData
			require.NoError(t, json.Unmarshal(m.Data, &d))
			assert.Equal(t, JoinLeaveData{Room: "r", UserID: "bob"}, d)
		}
		assert.Equal(t, 1, ts.hub.RoomCount("r"))
		b.send(map[string]any{"type": "leave", "room": "r"})
		assert.Equal(t, ErrCodeNotInRoom, b.readError())
	})
}

func TestJoinLeaveEventsOff(t *testing.T) {
	forEachDoor(t, HandlerConfig{DisableJoinLeaveEvents: true}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		b := dial(t, ts.url, nil)
		a.join("r")
		b.join("r") // b still gets its acknowledgement
		b.send(map[string]any{"type": "chat", "room": "r", "data": 1})
		m := a.read() // a sees the chat, and no join event before it
		assert.Equal(t, MessageTypeChat, m.Type)
	})
}

func TestChatServerSetsIdentity(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		b := dial(t, ts.url, nil)
		a.join("r")
		b.join("r")
		a.readType(MessageTypeJoin)
		// A client cannot speak as the system or as someone else, nor pick
		// the id or the time.
		a.sendRaw(`{"type":"notification","room":"r","from":"system","id":"forged","timestamp":"2001-01-01T00:00:00Z","data":{"n":1}}`)
		m := b.readType(MessageTypeNotification)
		assert.Equal(t, a.id, m.From)
		assert.NotEqual(t, "forged", m.ID)
		assert.WithinDuration(t, time.Now(), m.Timestamp, time.Minute)
		assert.JSONEq(t, `{"n":1}`, string(m.Data))
	})
}

func TestDirectMessage(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		b := dial(t, ts.url, nil)
		a.send(map[string]any{"type": "chat", "to": b.id, "data": "psst"})
		m := b.readType(MessageTypeChat)
		assert.Equal(t, a.id, m.From)
		assert.Equal(t, b.id, m.To)
		assert.Empty(t, m.Room)
		assert.JSONEq(t, `"psst"`, string(m.Data))

		a.send(map[string]any{"type": "chat", "to": "nobody.1", "data": 1})
		assert.Equal(t, ErrCodeNotFound, a.readError())
	})
}

func TestPresence(t *testing.T) {
	forEachDoor(t, HandlerConfig{Authenticate: userAuth, PresenceDebounce: 50 * time.Millisecond}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, as("alice"))
		b1 := dial(t, ts.url, as("bob"))
		b2 := dial(t, ts.url, as("bob")) // bob's second connection
		a.join("r")
		b1.join("r")
		assert.True(t, ts.handler.Online("bob"))

		b1.send(map[string]any{"type": "presence", "data": map[string]string{"status": "away"}})
		m := a.readType(MessageTypePresence)
		var d PresenceData
		require.NoError(t, json.Unmarshal(m.Data, &d))
		assert.Equal(t, PresenceData{Status: PresenceAway, UserID: "bob"}, d)
		assert.Equal(t, "r", m.Room)

		b1.send(map[string]any{"type": "presence", "data": map[string]string{"status": "sleeping"}})
		assert.Equal(t, ErrCodeBadData, b1.readError())

		// bob's first connection goes: bob is still online (b2), so only a
		// leave event; then b2 goes too, and the rooms b2 was in hear offline.
		b2.join("r")
		b1.ws.Close()
		m = a.readType(MessageTypeLeave)
		require.NoError(t, json.Unmarshal(m.Data, &d))
		assert.True(t, ts.handler.Online("bob"))
		b2.ws.Close()
		m = a.readType(MessageTypePresence)
		require.NoError(t, json.Unmarshal(m.Data, &d))
		assert.Equal(t, PresenceData{Status: PresenceOffline, UserID: "bob"}, d)
		assert.False(t, ts.handler.Online("bob"))
	})
}

func TestPing(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		a.send(map[string]any{"type": "ping"})
		m := a.read()
		assert.Equal(t, MessageTypePong, m.Type)
		assert.Equal(t, "system", m.From)

		// A WebSocket ping control frame gets a pong control frame.
		pong := make(chan string, 1)
		a.ws.SetPongHandler(func(s string) error { pong <- s; return nil })
		require.NoError(t, a.ws.WriteControl(websocket.PingMessage, []byte("hb"), time.Now().Add(time.Second)))
		go a.ws.ReadMessage() // pong handlers run inside reads
		select {
		case s := <-pong:
			assert.Equal(t, "hb", s)
		case <-time.After(5 * time.Second):
			t.Fatal("no pong")
		}
	})
}

func TestErrorCodes(t *testing.T) {
	cfg := HandlerConfig{
		MaxRoomsPerConn:  2,
		AuthorizeJoin:    func(_, room string) error { return forbidIf(room == "vip") },
		AuthorizePublish: func(_, room, _ string) error { return forbidIf(room == "readonly") },
	}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		cases := []struct {
			name, frame, code string
		}{
			{name: "not JSON", frame: `hello`, code: ErrCodeBadJSON},
			{name: "JSON array", frame: `[1,2]`, code: ErrCodeBadJSON},
			{name: "no type", frame: `{"room":"r"}`, code: ErrCodeUnknownType},
			{name: "malformed type", frame: `{"type":"Chat Now!","room":"r"}`, code: ErrCodeUnknownType},
			{name: "system is reserved", frame: `{"type":"system","room":"r"}`, code: ErrCodeForbidden},
			{name: "error is reserved", frame: `{"type":"error","room":"r"}`, code: ErrCodeForbidden},
			{name: "pong is reserved", frame: `{"type":"pong"}`, code: ErrCodeForbidden},
			{name: "room with a space", frame: `{"type":"join","room":"a b"}`, code: ErrCodeBadRoom},
			{name: "room with braces", frame: `{"type":"join","room":"{x}"}`, code: ErrCodeBadRoom},
			{name: "room too long", frame: `{"type":"join","room":"` + strings.Repeat("r", 129) + `"}`, code: ErrCodeBadRoom},
			{name: "empty room", frame: `{"type":"join"}`, code: ErrCodeBadRoom},
			{name: "chat without room or to", frame: `{"type":"chat","data":1}`, code: ErrCodeBadRoom},
			{name: "chat to a room not joined", frame: `{"type":"chat","room":"elsewhere","data":1}`, code: ErrCodeNotInRoom},
			{name: "join refused", frame: `{"type":"join","room":"vip"}`, code: ErrCodeForbidden},
			{name: "presence without data", frame: `{"type":"presence"}`, code: ErrCodeBadData},
		}
		for _, tc := range cases {
			a.sendRaw(tc.frame)
			assert.Equal(t, tc.code, a.readError(), tc.name)
		}
		a.join("readonly")
		a.sendRaw(`{"type":"chat","room":"readonly","data":1}`)
		assert.Equal(t, ErrCodeForbidden, a.readError(), "publish refused")
		a.join("two")
		a.sendRaw(`{"type":"join","room":"three"}`)
		assert.Equal(t, ErrCodeTooManyRooms, a.readError())
		assert.Equal(t, 0, ts.hub.RoomCount("three"))
		assert.GreaterOrEqual(t, ts.handler.Stats().ErrorsSent, uint64(len(cases)+2))
	})
}

func forbidIf(b bool) error {
	if b {
		return errors.New("no")
	}
	return nil
}

func TestRateLimit(t *testing.T) {
	// One token per 30 s: the test's timing cannot refill the bucket.
	forEachDoor(t, HandlerConfig{RateLimit: 1.0 / 30, RateBurst: 3}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		for range 3 {
			a.send(map[string]any{"type": "ping"})
			assert.Equal(t, MessageTypePong, a.read().Type)
		}
		a.send(map[string]any{"type": "ping"})
		assert.Equal(t, ErrCodeRateLimited, a.readError())
		// Keep going past another burst of refusals: closed with 1008.
		for range 5 {
			a.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
		}
		assert.Equal(t, websocket.ClosePolicyViolation, a.closeCode())
	})
}

// rawFrame writes bytes straight to the client's socket, for frames a
// well-behaved client library will not send.
func (c *client) rawFrame(b []byte) {
	c.t.Helper()
	_, err := c.ws.UnderlyingConn().Write(b)
	require.NoError(c.t, err)
}

func maskedFrame(t *testing.T, op ws.OpCode, fin bool, payload []byte) []byte {
	var buf bytes.Buffer
	require.NoError(t, ws.WriteFrame(&buf, ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), payload...)))))
	return buf.Bytes()
}

func TestCloseCodes(t *testing.T) {
	cases := []struct {
		name  string
		frame func(t *testing.T) []byte
		code  int
	}{
		{name: "invalid UTF-8", frame: func(t *testing.T) []byte { return maskedFrame(t, ws.OpText, true, []byte{'"', 0xff, '"'}) }, code: websocket.CloseInvalidFramePayloadData},
		{name: "too big", frame: func(t *testing.T) []byte { return maskedFrame(t, ws.OpText, true, bytes.Repeat([]byte("a"), 2048)) }, code: websocket.CloseMessageTooBig},
		{name: "unmasked", frame: func(t *testing.T) []byte { return []byte{0x81, 0x02, '{', '}'} }, code: websocket.CloseProtocolError},
		{name: "reserved opcode", frame: func(t *testing.T) []byte { return maskedFrame(t, ws.OpCode(3), true, nil) }, code: websocket.CloseProtocolError},
		{name: "lone continuation", frame: func(t *testing.T) []byte { return maskedFrame(t, ws.OpContinuation, true, []byte("x")) }, code: websocket.CloseProtocolError},
		{name: "binary", frame: func(t *testing.T) []byte { return maskedFrame(t, ws.OpBinary, true, []byte{1}) }, code: websocket.CloseUnsupportedData},
	}
	for _, d := range doors {
		for _, tc := range cases {
			t.Run(string(d)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				ts := newTestServer(t, d, HandlerConfig{MaxMessageSize: 1024})
				a := dial(t, ts.url, nil)
				a.rawFrame(tc.frame(t))
				assert.Equal(t, tc.code, a.closeCode())
				require.Eventually(t, func() bool { return ts.hub.ConnectionCount() == 0 }, 5*time.Second, 10*time.Millisecond)
			})
		}
	}
}

// A client's close is answered with the same code, and the connection is
// released.
func TestClientClose(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		a.join("r")
		require.NoError(t, a.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"), time.Now().Add(time.Second)))
		assert.Equal(t, 4000, a.closeCode())
		require.Eventually(t, func() bool {
			return ts.hub.ConnectionCount() == 0 && ts.hub.RoomCount("r") == 0 && ts.handler.Connections() == 0
		}, 5*time.Second, 10*time.Millisecond)
	})
}

func TestAuthAndOrigin(t *testing.T) {
	cfg := HandlerConfig{Authenticate: userAuth, AllowedOrigins: []string{"https://app.example.com"}}
	forEachDoor(t, cfg, func(t *testing.T, ts *testServer) {
		_, resp, err := websocket.DefaultDialer.Dial(ts.url, nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

		_, resp, err = websocket.DefaultDialer.Dial(ts.url, http.Header{"X-User": {"u"}, "Origin": {"https://evil.example"}})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)

		host := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/ws"), "ws://")
		for _, origin := range []string{"https://app.example.com", "http://" + host} { // allow-listed; same host
			c, _, err := websocket.DefaultDialer.Dial(ts.url, http.Header{"X-User": {"u"}, "Origin": {origin}})
			require.NoError(t, err, origin)
			c.Close()
		}
		c, _, err := websocket.DefaultDialer.Dial(ts.url+"?user=q", nil) // the query reaches Authenticate on both doors
		require.NoError(t, err)
		c.Close()
		assert.GreaterOrEqual(t, ts.handler.Stats().Rejected, uint64(2))
	})
}

// A client that sends its first frame in the same packet as its handshake
// loses nothing.
func TestEarlyFrameAfterHandshake(t *testing.T) {
	forEachDoor(t, HandlerConfig{}, func(t *testing.T, ts *testServer) {
		addr := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/ws"), "ws://")
		nc, err := netDial(addr)
		require.NoError(t, err)
		defer nc.Close()
		req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		payload := append([]byte(req), maskedFrame(t, ws.OpText, true, []byte(`{"type":"ping"}`))...)
		_, err = nc.Write(payload)
		require.NoError(t, err)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []string
		br := newBufReader(nc)
		_, err = readHTTPResponse(br)
		require.NoError(t, err)
		for len(got) < 2 {
			f, err := ws.ReadFrame(br)
			require.NoError(t, err)
			var m Message
			require.NoError(t, json.Unmarshal(f.Payload, &m))
			got = append(got, m.Type)
		}
		assert.Equal(t, []string{MessageTypeSystem, MessageTypePong}, got)
	})
}

func TestManyMessagesInOrder(t *testing.T) {
	forEachDoor(t, HandlerConfig{RateLimit: -1}, func(t *testing.T, ts *testServer) {
		a := dial(t, ts.url, nil)
		b := dial(t, ts.url, nil)
		a.join("r")
		b.join("r")
		a.readType(MessageTypeJoin)
		const n = 500
		go func() {
			for i := range n {
				a.ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"type":"chat","room":"r","data":%d}`, i))
			}
		}()
		for i := range n {
			m := b.readType(MessageTypeChat)
			require.Equal(t, fmt.Sprint(i), string(m.Data))
		}
	})
}
