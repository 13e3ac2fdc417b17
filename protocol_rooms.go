package realtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Room commands: join, leave and presence, and the events they send.

func (h *Handler) join(c *conn, room string) {
	if !ValidRoomName(room) {
		h.sendError(c, ErrCodeBadRoom, "room must be 1-128 characters of A-Z, a-z, 0-9, '-_.:@/'")
		return
	}
	if h.cfg.AuthorizeJoin != nil {
		if err := h.cfg.AuthorizeJoin(c.userID, room); err != nil {
			h.sendError(c, ErrCodeForbidden, "not allowed to join "+strconv.Quote(room))
			return
		}
	}
	joined, err := h.rooms.Join(c, room, h.cfg.MaxRoomsPerConn)
	switch {
	case errors.Is(err, ErrTooManyRooms):
		h.sendError(c, ErrCodeTooManyRooms, fmt.Sprintf("at most %d rooms per connection", h.cfg.MaxRoomsPerConn))
		return
	case err != nil: // not registered: the connection is going away
		return
	}
	if joined {
		h.recordMember(room, c, +1)
	}
	h.roomEvent(c, MessageTypeJoin, room, joined && !h.cfg.DisableJoinLeaveEvents)
}

func (h *Handler) leave(c *conn, room string) {
	if !ValidRoomName(room) {
		h.sendError(c, ErrCodeBadRoom, "room must be 1-128 characters of A-Z, a-z, 0-9, '-_.:@/'")
		return
	}
	if !h.rooms.Leave(c, room) {
		h.sendError(c, ErrCodeNotInRoom, "not in room "+strconv.Quote(room))
		return
	}
	h.recordMember(room, c, -1)
	// The leaver is no longer a member: it gets its acknowledgement itself.
	msg := h.eventMessage(c, MessageTypeLeave, room)
	c.Send(msg)
	if !h.cfg.DisableJoinLeaveEvents {
		h.deliver(c, msg)
	}
}

// roomEvent sends a join or leave event about c: to the whole room if toRoom
// (through the Broadcaster when there is one), otherwise to c alone as its
// acknowledgement. c is not a member when it left; detach uses it so.
func (h *Handler) roomEvent(c *conn, typ, room string, toRoom bool) {
	msg := h.eventMessage(c, typ, room)
	if !toRoom {
		if typ == MessageTypeJoin {
			c.Send(msg)
		}
		return
	}
	h.deliver(c, msg)
}

func (h *Handler) eventMessage(c *conn, typ, room string) *Message {
	data, _ := json.Marshal(JoinLeaveData{Room: room, UserID: c.userID})
	return &Message{ID: newMessageID(h.cfg.PodID), Type: typ, Room: room, From: "system", Data: data, Timestamp: time.Now().UTC()}
}

// presenceEvent tells room that c's user has status.
func (h *Handler) presenceEvent(c *conn, room, status string) {
	data, _ := json.Marshal(PresenceData{Status: status, UserID: c.userID})
	h.deliver(c, &Message{ID: newMessageID(h.cfg.PodID), Type: MessageTypePresence, Room: room, From: c.id, Data: data, Timestamp: time.Now().UTC()})
}

func (h *Handler) setPresence(c *conn, data json.RawMessage) {
	var p struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(data, &p) != nil {
		h.sendError(c, ErrCodeBadData, `presence data must be {"status":"online"|"away"|"offline"}`)
		return
	}
	if !validStatus(p.Status) {
		h.sendError(c, ErrCodeBadData, `presence status must be "online", "away" or "offline"`)
		return
	}
	for _, room := range h.rooms.Rooms(c) {
		h.presenceEvent(c, room, p.Status)
	}
}

func (h *Handler) isMember(c *conn, room string) bool {
	for _, r := range h.rooms.Rooms(c) {
		if r == room {
			return true
		}
	}
	return false
}
