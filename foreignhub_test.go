package realtime_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/fake"
)

// The handler works with any Hub, not only ours: here the naive baseline.
// Without a ShardedHub, Shutdown is the caller's to call.
func TestHandlerWithForeignHub(t *testing.T) {
	hub := fake.NewNaiveHub[realtime.Connection](func(m *realtime.Message) string { return m.Room })
	h := realtime.NewHandler(hub, slog.New(slog.DiscardHandler), realtime.HandlerConfig{MaxRoomsPerConn: 1})
	srv := httptest.NewServer(h.Routes())
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	read := func(c *websocket.Conn, typ string) realtime.Message {
		t.Helper()
		for range 20 {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var m realtime.Message
			require.NoError(t, c.ReadJSON(&m))
			if m.Type == typ {
				return m
			}
		}
		t.Fatalf("no %s message", typ)
		return realtime.Message{}
	}
	var conns []*websocket.Conn
	for range 2 {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		require.NoError(t, err)
		defer c.Close()
		read(c, realtime.MessageTypeSystem)
		require.NoError(t, c.WriteJSON(map[string]string{"type": "join", "room": "r"}))
		read(c, realtime.MessageTypeJoin)
		conns = append(conns, c)
	}
	require.NoError(t, conns[0].WriteJSON(map[string]string{"type": "join", "room": "second"}))
	m := read(conns[0], realtime.MessageTypeError)
	var e realtime.ErrorData
	require.NoError(t, json.Unmarshal(m.Data, &e))
	assert.Equal(t, realtime.ErrCodeTooManyRooms, e.Code, "room limits hold without a ShardedHub")

	require.NoError(t, conns[1].WriteJSON(map[string]any{"type": "chat", "room": "r", "data": "hi"}))
	assert.Equal(t, `"hi"`, string(read(conns[0], realtime.MessageTypeChat).Data))
	assert.Equal(t, 2, hub.RoomCount("r"))

	require.NoError(t, h.Shutdown(context.Background()))
	for _, c := range conns {
		_, _, err := c.ReadMessage()
		for err == nil {
			_, _, err = c.ReadMessage()
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, websocket.CloseGoingAway, ce.Code)
	}
	assert.Equal(t, 0, hub.ConnectionCount())
}
