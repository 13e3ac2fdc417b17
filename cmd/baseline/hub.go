// The baseline is the classic goroutine-per-connection WebSocket hub,
// written the way the original realtime package is usually implemented with
// gorilla/websocket (its chat example, plus rooms): a reader and a writer
// goroutine per connection, a buffered send channel, one RWMutex over
// map[room]map[*client], and the message encoded to JSON per recipient in
// the writer. The load test runs it beside ours so that figures are ratios
// measured in the same run. It speaks the subset of our protocol the load
// test uses: join, leave, and room messages.
package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Message is the wire format, the same as realtime.Message.
type Message struct {
	ID        string          `json:"id,omitempty"`
	Type      string          `json:"type"`
	Room      string          `json:"room,omitempty"`
	From      string          `json:"from,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp time.Time       `json:"timestamp"`
}

// Hub is the baseline server. All methods may be called concurrently.
type Hub struct {
	mu     sync.RWMutex
	rooms  map[string]map[*client]struct{}
	conns  atomic.Int64
	seq    atomic.Uint64
	logger *slog.Logger
	up     websocket.Upgrader
}

type client struct {
	id   string
	ws   *websocket.Conn
	send chan *Message
	hub  *Hub
	once sync.Once
	// closed is set, under the hub's mu, before send is closed: a join read
	// after that neither rejoins a room nor sends on the closed channel.
	closed bool
}

const (
	sendBuffer = 256
	pingPeriod = 25 * time.Second
	pongWait   = 60 * time.Second
	writeWait  = 10 * time.Second
)

// New returns an empty Hub.
func New(logger *slog.Logger) *Hub {
	return &Hub{
		rooms:  map[string]map[*client]struct{}{},
		logger: logger,
		up:     websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }},
	}
}

// Connections returns the number of open connections.
func (h *Hub) Connections() int { return int(h.conns.Load()) }

// ServeHTTP upgrades and starts the connection's two goroutines.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := h.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{id: "b." + strconv.FormatUint(h.seq.Add(1), 36), ws: ws, send: make(chan *Message, sendBuffer), hub: h}
	h.conns.Add(1)
	go c.writePump()
	go c.readPump()
}

func (h *Hub) broadcast(m *Message) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.rooms[m.Room] {
		select {
		case c.send <- m:
		default: // slow consumer
			go c.close()
		}
	}
}

func (c *client) close() {
	c.once.Do(func() {
		h := c.hub
		h.mu.Lock()
		c.closed = true
		for name, members := range h.rooms {
			delete(members, c)
			if len(members) == 0 {
				delete(h.rooms, name)
			}
		}
		c.ws.Close()
		close(c.send) // under mu: a broadcast or a join holding it never sees it closed
		h.mu.Unlock()
		h.conns.Add(-1)
	})
}

func (c *client) readPump() {
	defer c.close()
	c.ws.SetReadLimit(64 << 10)
	c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error { c.ws.SetReadDeadline(time.Now().Add(pongWait)); return nil })
	for {
		var in Message
		if err := c.ws.ReadJSON(&in); err != nil {
			return
		}
		c.ws.SetReadDeadline(time.Now().Add(pongWait))
		h := c.hub
		switch in.Type {
		case "join":
			// The joiner's acknowledgement, as our server sends one: a load
			// test counts a connection when its join is acknowledged.
			data, _ := json.Marshal(map[string]string{"room": in.Room})
			ack := &Message{Type: "join", Room: in.Room, From: "system", Data: data, Timestamp: time.Now().UTC()}
			h.mu.Lock()
			if c.closed {
				h.mu.Unlock()
				return
			}
			if h.rooms[in.Room] == nil {
				h.rooms[in.Room] = map[*client]struct{}{}
			}
			h.rooms[in.Room][c] = struct{}{}
			select {
			case c.send <- ack:
			default:
				go c.close() // slow consumer, as broadcast treats one
			}
			h.mu.Unlock()
		case "leave":
			h.mu.Lock()
			delete(h.rooms[in.Room], c)
			h.mu.Unlock()
		default:
			h.broadcast(&Message{ID: strconv.FormatUint(h.seq.Add(1), 36), Type: in.Type, Room: in.Room, From: c.id, Data: in.Data, Timestamp: time.Now().UTC()})
		}
	}
}

func (c *client) writePump() {
	t := time.NewTicker(pingPeriod)
	defer func() { t.Stop(); c.close() }()
	for {
		select {
		case m, ok := <-c.send:
			if !ok {
				return
			}
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.ws.WriteJSON(m); err != nil {
				return
			}
		case <-t.C:
			c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.ws.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}
