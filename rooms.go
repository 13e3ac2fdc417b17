package realtime

// roomHub is what the protocol needs from a hub beyond Hub: a join that can
// refuse, and the rooms of a connection. ShardedHub has it; for any other Hub
// connRooms keeps each connection's rooms on the connection itself.
type roomHub interface {
	Join(conn Connection, room string, limit int) (bool, error)
	Leave(conn Connection, room string) bool
	Rooms(conn Connection) []string
}

type connRooms struct{ hub Hub }

func (r connRooms) Join(conn Connection, room string, limit int) (bool, error) {
	c := asConn(conn)
	for _, have := range c.rooms {
		if have == room {
			return false, nil
		}
	}
	if limit > 0 && len(c.rooms) >= limit {
		return false, ErrTooManyRooms
	}
	c.rooms = append(c.rooms, room)
	r.hub.JoinRoom(conn, room)
	return true, nil
}

func (r connRooms) Leave(conn Connection, room string) bool {
	c := asConn(conn)
	for i, have := range c.rooms {
		if have == room {
			c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
			r.hub.LeaveRoom(conn, room)
			return true
		}
	}
	return false
}

func (r connRooms) Rooms(conn Connection) []string {
	return append([]string(nil), asConn(conn).rooms...)
}

func asConn(c Connection) *conn { return c.(*conn) }
