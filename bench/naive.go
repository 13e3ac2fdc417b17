// Package bench measures the hub without sockets, each benchmark beside
// NaiveHub, the way the original package is usually implemented, as the
// baseline. Run it with `make bench`, which prints a table of medians and
// ratios.
package bench

import (
	"context"
	"sync"

	"github.com/realtimehub/realtime"
)

// NaiveHub is the baseline: one RWMutex over map[room]map[id]Connection, and
// every recipient's Send encodes the message itself. It implements
// realtime.Hub. All methods may be called concurrently.
type NaiveHub struct {
	mu    sync.RWMutex
	conns map[string]realtime.Connection
	rooms map[string]map[string]realtime.Connection
}

var _ realtime.Hub = (*NaiveHub)(nil)

// NewNaiveHub returns an empty NaiveHub.
func NewNaiveHub() *NaiveHub {
	return &NaiveHub{
		conns: make(map[string]realtime.Connection),
		rooms: make(map[string]map[string]realtime.Connection),
	}
}

// Run blocks until ctx ends, then closes every connection.
func (h *NaiveHub) Run(ctx context.Context) error {
	<-ctx.Done()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	return nil
}

// Register adds conn.
func (h *NaiveHub) Register(conn realtime.Connection) {
	h.mu.Lock()
	h.conns[conn.ID()] = conn
	h.mu.Unlock()
}

// Unregister removes conn from the hub and from every room.
func (h *NaiveHub) Unregister(conn realtime.Connection) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, conn.ID())
	for name, members := range h.rooms {
		delete(members, conn.ID())
		if len(members) == 0 {
			delete(h.rooms, name)
		}
	}
}

// JoinRoom adds conn to room.
func (h *NaiveHub) JoinRoom(conn realtime.Connection, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	members := h.rooms[room]
	if members == nil {
		members = make(map[string]realtime.Connection)
		h.rooms[room] = members
	}
	members[conn.ID()] = conn
}

// LeaveRoom removes conn from room.
func (h *NaiveHub) LeaveRoom(conn realtime.Connection, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if members := h.rooms[room]; members != nil {
		delete(members, conn.ID())
		if len(members) == 0 {
			delete(h.rooms, room)
		}
	}
}

// Broadcast calls Send on every member of msg.Room (every connection if it is
// empty) under the read lock.
func (h *NaiveHub) Broadcast(msg *realtime.Message) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	targets := h.conns
	if msg.Room != "" {
		targets = h.rooms[msg.Room]
	}
	for _, c := range targets {
		c.Send(msg)
	}
}

// SendTo calls Send on the connection with ID connID.
func (h *NaiveHub) SendTo(connID string, msg *realtime.Message) bool {
	h.mu.RLock()
	c, ok := h.conns[connID]
	h.mu.RUnlock()
	return ok && c.Send(msg)
}

// ConnectionCount returns the number of connections.
func (h *NaiveHub) ConnectionCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// RoomCount returns the number of members of room.
func (h *NaiveHub) RoomCount(room string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms[room])
}
