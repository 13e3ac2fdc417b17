package fake

import (
	"context"
	"sync"
)

// Sender is what the naive hub needs of a connection; realtime.Connection
// satisfies it for M = realtime.Message.
//
// Concurrency: the naive hub calls Send from any goroutine that broadcasts.
type Sender[M any] interface {
	ID() string
	Send(msg *M) bool
	Close()
}

// NaiveHub is the baseline hub, the way the original package is usually
// implemented: one RWMutex over map[room]map[id]Connection, and every
// recipient's Send encodes the message itself. NaiveHub[realtime.Connection,
// realtime.Message] implements realtime.Hub. All methods may be called
// concurrently.
type NaiveHub[C Sender[M], M any] struct {
	room  func(*M) string
	mu    sync.RWMutex
	conns map[string]C
	rooms map[string]map[string]C
}

// NewNaiveHub returns an empty NaiveHub; room tells a message's room ("" for
// everyone).
func NewNaiveHub[C Sender[M], M any](room func(*M) string) *NaiveHub[C, M] {
	return &NaiveHub[C, M]{
		room:  room,
		conns: make(map[string]C),
		rooms: make(map[string]map[string]C),
	}
}

// Run blocks until ctx ends, then closes every connection.
func (h *NaiveHub[C, M]) Run(ctx context.Context) error {
	<-ctx.Done()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	return nil
}

// Register adds conn.
func (h *NaiveHub[C, M]) Register(conn C) {
	h.mu.Lock()
	h.conns[conn.ID()] = conn
	h.mu.Unlock()
}

// Unregister removes conn from the hub and from every room.
func (h *NaiveHub[C, M]) Unregister(conn C) {
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
func (h *NaiveHub[C, M]) JoinRoom(conn C, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	members := h.rooms[room]
	if members == nil {
		members = make(map[string]C)
		h.rooms[room] = members
	}
	members[conn.ID()] = conn
}

// LeaveRoom removes conn from room.
func (h *NaiveHub[C, M]) LeaveRoom(conn C, room string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if members := h.rooms[room]; members != nil {
		delete(members, conn.ID())
		if len(members) == 0 {
			delete(h.rooms, room)
		}
	}
}

// Broadcast calls Send on every member of h.room(msg) (every connection if it is
// empty) under the read lock.
func (h *NaiveHub[C, M]) Broadcast(msg *M) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	targets := h.conns
	if h.room(msg) != "" {
		targets = h.rooms[h.room(msg)]
	}
	for _, c := range targets {
		c.Send(msg)
	}
}

// SendTo calls Send on the connection with ID connID.
func (h *NaiveHub[C, M]) SendTo(connID string, msg *M) bool {
	h.mu.RLock()
	c, ok := h.conns[connID]
	h.mu.RUnlock()
	return ok && c.Send(msg)
}

// ConnectionCount returns the number of connections.
func (h *NaiveHub[C, M]) ConnectionCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// RoomCount returns the number of members of room.
func (h *NaiveHub[C, M]) RoomCount(room string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms[room])
}
