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
	rooms := roomsOf(conn)
	for _, have := range *rooms {
		if have == room {
			return false, nil
		}
	}
	if limit > 0 && len(*rooms) >= limit {
		return false, ErrTooManyRooms
	}
	*rooms = append(*rooms, room)
	r.hub.JoinRoom(conn, room)
	return true, nil
}

func (r connRooms) Leave(conn Connection, room string) bool {
	rooms := roomsOf(conn)
	for i, have := range *rooms {
		if have == room {
			*rooms = append((*rooms)[:i], (*rooms)[i+1:]...)
			r.hub.LeaveRoom(conn, room)
			return true
		}
	}
	return false
}

func (r connRooms) Rooms(conn Connection) []string {
	return append([]string(nil), *roomsOf(conn)...)
}

// roomsOf returns the connection's own room list, made on first use.
func roomsOf(x Connection) *[]string {
	c := x.(*conn)
	if c.rooms == nil {
		c.rooms = new([]string)
	}
	return c.rooms
}
