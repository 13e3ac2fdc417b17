package realtime

import "sync"

// connRooms gives a Handler the RoomHub operations over a Hub that lacks
// them: it keeps each connection's rooms itself, keyed by connection ID, and
// calls the hub's JoinRoom and LeaveRoom. It works for any Connection.
// All methods may be called concurrently.
type connRooms struct {
	hub   Hub
	mu    sync.Mutex
	rooms map[string][]string // connection ID → its rooms
}

var _ RoomHub = (*connRooms)(nil)

func newConnRooms(hub Hub) *connRooms {
	return &connRooms{hub: hub, rooms: map[string][]string{}}
}

// Join adds conn to room unless it is there already or at limit.
func (r *connRooms) Join(conn Connection, room string, limit int) (bool, error) {
	id := conn.ID()
	r.mu.Lock()
	have := r.rooms[id]
	for _, name := range have {
		if name == room {
			r.mu.Unlock()
			return false, nil
		}
	}
	if limit > 0 && len(have) >= limit {
		r.mu.Unlock()
		return false, ErrTooManyRooms
	}
	r.rooms[id] = append(have, room)
	r.mu.Unlock()
	r.hub.JoinRoom(conn, room)
	return true, nil
}

// Leave removes conn from room if it is there.
func (r *connRooms) Leave(conn Connection, room string) bool {
	id := conn.ID()
	r.mu.Lock()
	have := r.rooms[id]
	for i, name := range have {
		if name == room {
			r.rooms[id] = append(have[:i:i], have[i+1:]...)
			r.mu.Unlock()
			r.hub.LeaveRoom(conn, room)
			return true
		}
	}
	r.mu.Unlock()
	return false
}

// Rooms returns a copy of conn's rooms.
func (r *connRooms) Rooms(conn Connection) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rooms[conn.ID()]...)
}

// forget drops what is kept for conn, once it is gone.
func (r *connRooms) forget(conn Connection) {
	r.mu.Lock()
	delete(r.rooms, conn.ID())
	r.mu.Unlock()
}
