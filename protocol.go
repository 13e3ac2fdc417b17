package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// Error codes sent to clients in {"type":"error","data":{"code":…,"message":…}}.
// They are stable: clients may switch on them.
const (
	ErrCodeBadJSON       = "bad_json"       // the frame is not a JSON object shaped like Message
	ErrCodeUnknownType   = "unknown_type"   // no type, or a malformed one
	ErrCodeForbidden     = "forbidden"      // a reserved type, or AuthorizeJoin/AuthorizePublish refused
	ErrCodeNotInRoom     = "not_in_room"    // publishing to or leaving a room not joined
	ErrCodeRateLimited   = "rate_limited"   // over the per-connection message rate
	ErrCodeTooManyRooms  = "too_many_rooms" // over MaxRoomsPerConn
	ErrCodeBadRoom       = "bad_room"       // missing, too long, or bad characters
	ErrCodeBadData       = "bad_data"       // data not as the type requires (presence status)
	ErrCodeNotFound      = "not_found"      // a direct message to a connection that does not exist
	ErrCodePublishFailed = "publish_failed" // the Broadcaster could not publish; the message was not sent
)

// ErrorData is the data of an error message.
type ErrorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ConnectedData is the data of the system message a client gets on connect.
type ConnectedData struct {
	Event        string `json:"event"` // "connected"
	ConnectionID string `json:"connection_id"`
	UserID       string `json:"user_id"`
}

// MaxRoomNameLength is the longest room name accepted.
const MaxRoomNameLength = 128

// ValidRoomName reports whether name is acceptable as a room: 1 to 128
// bytes of ASCII letters, digits and "-_.:@/". Braces and spaces are
// excluded, so a room name can never break a Redis hash tag or a log line.
func ValidRoomName(name string) bool {
	if len(name) == 0 || len(name) > MaxRoomNameLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '-' || b == '_' || b == '.' || b == ':' || b == '@' || b == '/') {
			return false
		}
	}
	return true
}

// validType: 1 to 64 bytes of lowercase letters, digits, '_', '-' and '.'.
func validType(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		b := t[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

// inbound is a client frame. id, from and timestamp are ignored: the server
// sets them.
type inbound struct {
	Type string          `json:"type"`
	Room string          `json:"room"`
	To   string          `json:"to"`
	Data json.RawMessage `json:"data"`
}

// handleMessage runs one client command.
func (h *Handler) handleMessage(c *conn, payload []byte) {
	if !c.limiter.allow(h.cfg.RateLimit, h.cfg.RateBurst, time.Now()) {
		if int(c.limiter.strikes) > h.cfg.RateBurst {
			c.stopReading()
			c.fail(wsframe.ClosePolicyViolation, "rate limit exceeded")
			return
		}
		h.sendError(c, ErrCodeRateLimited, "too many messages; slow down")
		return
	}
	var in inbound
	if err := json.Unmarshal(payload, &in); err != nil {
		h.sendError(c, ErrCodeBadJSON, "message is not a JSON object like {\"type\":…}")
		return
	}
	switch in.Type {
	case "":
		h.sendError(c, ErrCodeUnknownType, "message has no type")
	case MessageTypePing:
		c.Send(&Message{Type: MessageTypePong, From: "system", Timestamp: time.Now().UTC()})
	case MessageTypeJoin:
		h.join(c, in.Room)
	case MessageTypeLeave:
		h.leave(c, in.Room)
	case MessageTypePresence:
		h.setPresence(c, in.Data)
	case MessageTypeSystem, MessageTypeError, MessageTypePong:
		h.sendError(c, ErrCodeForbidden, fmt.Sprintf("type %q is reserved for the server", in.Type))
	default:
		if !validType(in.Type) {
			h.sendError(c, ErrCodeUnknownType, "type must be 1-64 characters of a-z, 0-9, '_', '-', '.'")
			return
		}
		if in.To != "" {
			h.direct(c, &in)
			return
		}
		h.publish(c, &in)
	}
}

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
	return &Message{ID: h.newID(), Type: typ, Room: room, From: "system", Data: data, Timestamp: time.Now().UTC()}
}

// presenceEvent tells room that c's user has status.
func (h *Handler) presenceEvent(c *conn, room, status string) {
	data, _ := json.Marshal(PresenceData{Status: status, UserID: c.userID})
	h.deliver(c, &Message{ID: h.newID(), Type: MessageTypePresence, Room: room, From: c.id, Data: data, Timestamp: time.Now().UTC()})
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

// publish sends a client's message to a room it is in.
func (h *Handler) publish(c *conn, in *inbound) {
	if !ValidRoomName(in.Room) {
		h.sendError(c, ErrCodeBadRoom, `a message needs a valid "room" or a "to"`)
		return
	}
	if !h.isMember(c, in.Room) {
		h.sendError(c, ErrCodeNotInRoom, "join "+strconv.Quote(in.Room)+" before sending to it")
		return
	}
	if h.cfg.AuthorizePublish != nil {
		if err := h.cfg.AuthorizePublish(c.userID, in.Room, in.Type); err != nil {
			h.sendError(c, ErrCodeForbidden, "not allowed to send to "+strconv.Quote(in.Room))
			return
		}
	}
	h.deliver(c, &Message{ID: h.newID(), Type: in.Type, Room: in.Room, From: c.id, Data: in.Data, Timestamp: time.Now().UTC()})
}

func (h *Handler) isMember(c *conn, room string) bool {
	for _, r := range h.rooms.Rooms(c) {
		if r == room {
			return true
		}
	}
	return false
}

// direct sends a client's message to one connection.
func (h *Handler) direct(c *conn, in *inbound) {
	msg := &Message{ID: h.newID(), Type: in.Type, From: c.id, To: in.To, Data: in.Data, Timestamp: time.Now().UTC()}
	if h.hub.SendTo(in.To, msg) {
		return
	}
	if h.cfg.Broadcaster != nil {
		h.deliver(c, msg) // the pod that owns the connection delivers it
		return
	}
	h.sendError(c, ErrCodeNotFound, "no connection "+strconv.Quote(in.To))
}

// publishTimeout bounds one Publish on behalf of a client.
const publishTimeout = 5 * time.Second

// deliver hands msg to the Broadcaster if there is one (every pod, this one
// included, delivers it from there), else to the hub. A failed publish is
// counted and reported to c.
func (h *Handler) deliver(c *conn, msg *Message) {
	if h.cfg.Broadcaster == nil {
		h.hub.Broadcast(msg)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	err := h.cfg.Broadcaster.Publish(ctx, msg)
	switch {
	case err == nil:
	case errors.Is(err, ErrNoSuchConnection):
		h.sendError(c, ErrCodeNotFound, "no connection "+strconv.Quote(msg.To))
	default:
		h.stats.publishErrors.Add(1)
		h.logger.Warn("realtime: publish", "room", msg.Room, "type", msg.Type, "err", err)
		h.sendError(c, ErrCodePublishFailed, "not delivered to the other pods: "+err.Error())
	}
}

func (h *Handler) sendConnected(c *conn) {
	msg, err := SystemMessage(MessageTypeSystem, ConnectedData{Event: "connected", ConnectionID: c.id, UserID: c.userID})
	if err == nil {
		c.Send(msg)
	}
}

func (h *Handler) sendError(c *conn, code, text string) {
	h.stats.errorsSent.Add(1)
	msg, err := SystemMessage(MessageTypeError, ErrorData{Code: code, Message: text})
	if err == nil {
		c.Send(msg)
	}
}

// newID returns a message ID unique across pods: the pod ID and a counter.
func (h *Handler) newID() string {
	return h.cfg.PodID + "-" + strconv.FormatUint(h.seq.Add(1), 36)
}
