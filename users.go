package realtime

import (
	"cmp"
	"context"
	"slices"
)

// What server code can do with a user, whichever pods its connections are
// on: send it a message, disconnect it, count its connections, and list a
// room's members.

// PublishToUser sends msg to every connection of user on every pod (with a
// UserRouter, as RedisBroadcaster is; else on this pod). It fills in a
// missing ID, Timestamp and From ("system"); Room and To are cleared. Direct
// messages are not kept in history.
func (h *Handler) PublishToUser(ctx context.Context, user string, msg *Message) error {
	if msg == nil {
		return ErrNilMessage
	}
	if !ValidUserID(user) {
		return ErrBadUserID
	}
	h.stamp(msg)
	msg.Room, msg.To, msg.Offset, msg.Epoch = "", "", 0, ""
	f, err := NewFrame(msg)
	if err != nil {
		return err
	}
	if r, ok := h.cfg.Broadcaster.(UserRouter); ok {
		return r.SendToUser(ctx, user, f)
	}
	h.DeliverToUser(user, f)
	return nil
}

// DisconnectUser closes every connection of user on every pod (with a
// UserRouter; else on this pod) with CloseForbidden (3003, "disconnected").
// A client that reconnects is authenticated anew: revoke its credentials
// first.
func (h *Handler) DisconnectUser(ctx context.Context, user string) error {
	if !ValidUserID(user) {
		return ErrBadUserID
	}
	if r, ok := h.cfg.Broadcaster.(UserRouter); ok {
		return r.DisconnectUser(ctx, user)
	}
	h.CloseUser(user)
	return nil
}

// DeliverToUser queues f to every connection of user on this pod and
// returns how many took it (UserTarget).
func (h *Handler) DeliverToUser(user string, f *Frame) int {
	n := 0
	h.users.each(user, func(c *conn) {
		if c.SendFrame(f) {
			n++
		}
	})
	return n
}

// CloseUser closes every connection of user on this pod with CloseForbidden
// and returns how many (UserTarget).
func (h *Handler) CloseUser(user string) int {
	n := h.users.each(user, func(c *conn) { c.fail(CloseForbidden, "disconnected") })
	h.stats.disconnected.Add(uint64(n))
	return n
}

// UserConnections returns how many connections user has on every pod (with
// a PresenceTracker; else on this pod).
func (h *Handler) UserConnections(ctx context.Context, user string) (int, error) {
	if h.tracker != nil {
		return h.tracker.UserConnections(ctx, user)
	}
	n, _ := h.users.count(user)
	return n, nil
}

// RoomMembers returns the users with a connection in room (on every pod
// with a PresenceTracker or a Roster; else on this pod), sorted by user ID,
// with their connections and status. Anonymous connections are not listed.
func (h *Handler) RoomMembers(ctx context.Context, room string) ([]MemberInfo, error) {
	var ms []MemberInfo
	switch r := h.cfg.Broadcaster.(type) {
	case PresenceTracker:
		var err error
		if ms, err = r.RoomMembers(ctx, room); err != nil {
			return nil, err
		}
	case Roster:
		users, err := r.RoomUsers(ctx, room)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			ms = append(ms, MemberInfo{UserID: u, Connections: 1, Status: PresenceOnline})
		}
	default:
		ms = h.localMembers(room)
	}
	slices.SortFunc(ms, func(a, b MemberInfo) int { return cmp.Compare(a.UserID, b.UserID) })
	return ms, nil
}

// localMembers returns room's users on this pod (none if the hub is not a
// Directory), with their connections in the room and status.
func (h *Handler) localMembers(room string) []MemberInfo {
	d, ok := h.hub.(Directory)
	if !ok {
		return nil
	}
	idx := map[string]int{}
	var ms []MemberInfo
	d.EachConnection(room, func(c Connection) {
		u := c.UserID()
		if u == "" {
			return
		}
		if i, ok := idx[u]; ok {
			ms[i].Connections++
			return
		}
		idx[u] = len(ms)
		ms = append(ms, MemberInfo{UserID: u, Connections: 1})
	})
	for i := range ms {
		_, st := h.users.count(ms[i].UserID)
		ms[i].Status = cmp.Or(st, PresenceOnline)
	}
	return ms
}

// MaxUserIDLength is the longest user ID the server API and PublishToUser
// take.
const MaxUserIDLength = 256

// ValidUserID reports whether id can be addressed: 1 to 256 bytes with no
// control characters.
func ValidUserID(id string) bool {
	if len(id) == 0 || len(id) > MaxUserIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return false
		}
	}
	return true
}
