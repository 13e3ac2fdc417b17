package realtime

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// door is one of the Handler's two ways in.
type door string

const (
	httpDoor door = "http" // Routes() inside net/http
	rawDoor  door = "raw"  // Serve(ln) with the zero-copy upgrader
)

var doors = []door{httpDoor, rawDoor}

// testServer is a hub, a handler and one door on a loopback port.
type testServer struct {
	hub     *ShardedHub
	handler *Handler
	url     string // ws://127.0.0.1:port/ws
	stop    func() // cancels the hub's Run and waits for it
}

func newTestServer(t *testing.T, d door, cfg HandlerConfig) *testServer {
	t.Helper()
	hub := NewHub(quietLogger())
	h := NewHandler(hub, quietLogger(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { hub.Run(ctx); close(runDone) }()
	ts := &testServer{hub: hub, handler: h}
	var closeDoor func()
	switch d {
	case httpDoor:
		mux := http.NewServeMux()
		mux.Handle("/ws", h.Routes())
		srv := httptest.NewServer(mux)
		ts.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
		closeDoor = srv.Close
	case rawDoor:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		served := make(chan struct{})
		go func() { h.Serve(ln); close(served) }()
		ts.url = "ws://" + ln.Addr().String() + "/ws"
		closeDoor = func() { ln.Close(); <-served }
	}
	stopped := false
	ts.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-runDone:
		case <-time.After(15 * time.Second):
			t.Error("hub.Run did not return")
		}
		closeDoor()
	}
	t.Cleanup(ts.stop)
	return ts
}

// client is a gorilla/websocket client: an implementation independent of ours.
type client struct {
	t  *testing.T
	ws *websocket.Conn
	id string // connection ID from the connected message
}

func dial(t *testing.T, url string, header http.Header) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	require.NoError(t, err)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	c := &client{t: t, ws: ws}
	t.Cleanup(func() { ws.Close() })
	m := c.read()
	require.Equal(t, MessageTypeSystem, m.Type, "first message is the connected event")
	var d ConnectedData
	require.NoError(t, json.Unmarshal(m.Data, &d))
	require.Equal(t, "connected", d.Event)
	c.id = d.ConnectionID
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(c.t, err)
	require.NoError(c.t, c.ws.WriteMessage(websocket.TextMessage, b))
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	require.NoError(c.t, c.ws.WriteMessage(websocket.TextMessage, []byte(s)))
}

// read returns the next message, failing after 5 s.
func (c *client) read() Message {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, b, err := c.ws.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.TextMessage, typ)
	var m Message
	require.NoError(c.t, json.Unmarshal(b, &m), "%s", b)
	return m
}

// readType skips messages until one of type typ arrives.
func (c *client) readType(typ string) Message {
	c.t.Helper()
	for range 50 {
		if m := c.read(); m.Type == typ {
			return m
		}
	}
	c.t.Fatalf("no %q message", typ)
	return Message{}
}

// readError returns the code of the next error message.
func (c *client) readError() string {
	c.t.Helper()
	m := c.readType(MessageTypeError)
	var d ErrorData
	require.NoError(c.t, json.Unmarshal(m.Data, &d))
	require.Equal(c.t, "system", m.From)
	return d.Code
}

// join joins room and waits for the acknowledgement.
func (c *client) join(room string) {
	c.t.Helper()
	c.send(map[string]any{"type": "join", "room": room})
	m := c.readType(MessageTypeJoin)
	require.Equal(c.t, room, m.Room)
}

// closeCode reads until the connection closes and returns the close code
// (-1 if it ended without a close frame).
func (c *client) closeCode() int {
	c.t.Helper()
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ws.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		return -1
	}
}
