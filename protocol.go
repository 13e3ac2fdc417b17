package realtime

import (
	"encoding/json"
	"fmt"
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
	ErrCodeUnavailable   = "unavailable"    // what was asked could not be read now (the roster across pods); try again
)

// ErrorData is the data of an error message.
//
// It is a plain value.
type ErrorData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ConnectedData is the data of the system message a client gets on connect.
//
// It is a plain value.
type ConnectedData struct {
	Event        string `json:"event"` // "connected"
	ConnectionID string `json:"connection_id"`
	UserID       string `json:"user_id"`
	// ExpiresAt is when the connection's credentials expire, in unix
	// seconds (see Identity.ExpiresAt); absent if they do not.
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

// MaxRoomNameLength is the longest room name accepted.
const MaxRoomNameLength = 128

// ValidRoomName reports whether name is acceptable as a room: 1 to 128
// bytes of ASCII letters, digits and "-_.:@/", or a user's personal room
// ("~" and such characters; see UserRoom). Braces and spaces are excluded,
// so a room name can never break a Redis hash tag or a log line.
func ValidRoomName(name string) bool {
	if len(name) == 0 || len(name) > MaxRoomNameLength {
		return false
	}
	start := 0
	if name[0] == '~' {
		if len(name) == 1 {
			return false
		}
		start = 1
	}
	for i := start; i < len(name); i++ {
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

// charge charges one message (or ping) to c's rate limit, at its arrival, and
// reports whether it may pass. After RateBurst refusals in a row it closes c
// (1008) and stops reading it.
func (h *Handler) charge(c *conn) bool {
	if c.limiter.allow(h.cfg.RateLimit, h.cfg.RateBurst, time.Now()) {
		return true
	}
	if int(c.limiter.strikes) > h.cfg.RateBurst && !c.readStopped {
		c.readStopped = true // Feed stops at the next frame
		c.fail(wsframe.ClosePolicyViolation, "rate limit exceeded")
	}
	return false
}

// handleMessage takes one client message.
// It runs on the socket worker that read the message: the rate limit is
// judged at arrival. The command itself runs there too, or on the handler's
// commandRunner when hooks that may wait are set.
func (h *Handler) handleMessage(c *conn, payload []byte) {
	if !h.charge(c) {
		if !c.readStopped {
			h.sendError(c, ErrCodeRateLimited, "too many messages; slow down")
		}
		return
	}
	if h.eng.cmds == nil {
		h.handleCommand(c, payload)
		return
	}
	if !h.eng.cmds.submit(c, payload) {
		h.sendError(c, ErrCodeRateLimited, "too many commands waiting; slow down")
	}
}

// handleCommand runs one client command.
func (h *Handler) handleCommand(c *conn, payload []byte) {
	var in inbound
	if err := decodeInbound(payload, &in); err != nil {
		h.count(cmdInvalid)
		h.sendError(c, ErrCodeBadJSON, "message is not a JSON object like {\"type\":…}")
		return
	}
	switch in.Type {
	case "":
		h.count(cmdInvalid)
		h.sendError(c, ErrCodeUnknownType, "message has no type")
	case MessageTypePing:
		h.count(cmdPing)
		c.Send(&Message{Type: MessageTypePong, From: "system", Timestamp: time.Now().UTC()})
	case MessageTypeJoin:
		h.count(cmdJoin)
		h.join(c, in.Room, in.Data)
	case MessageTypeLeave:
		h.count(cmdLeave)
		h.leave(c, in.Room)
	case MessageTypePresence:
		h.count(cmdPresence)
		h.setPresence(c, in.Data)
	case MessageTypeMembers:
		h.count(cmdMembers)
		h.members(c, in.Room)
	case MessageTypeRefresh:
		h.count(cmdRefresh)
		h.refresh(c, in.Data)
	case MessageTypeSystem, MessageTypeError, MessageTypePong, MessageTypeMembersDiff:
		h.count(cmdInvalid)
		h.sendError(c, ErrCodeForbidden, fmt.Sprintf("type %q is reserved for the server", in.Type))
	default:
		switch {
		case !validType(in.Type):
			h.count(cmdInvalid)
			h.sendError(c, ErrCodeUnknownType, "type must be 1-64 characters of a-z, 0-9, '_', '-', '.'")
		case in.To != "":
			h.count(cmdDirect)
			h.direct(c, &in)
		default:
			h.count(cmdPublish)
			h.publish(c, &in)
		}
	}
}

// count counts one client command of kind k.
func (h *Handler) count(k commandKind) { h.stats.labels.commands[k].Add(1) }

func (h *Handler) sendConnected(c *conn) {
	c.enqueue(connectedFrame(c.id, c.UserID(), unixOrZero(c.identity().ExpiresAt), time.Now().UTC()))
}

func (h *Handler) sendError(c *conn, code, text string) { h.sendErrorIn(c, "", code, text) }

// sendErrorIn sends an error about room (its "room" field says which).
func (h *Handler) sendErrorIn(c *conn, room, code, text string) {
	h.stats.errorsSent.Add(1)
	h.stats.labels.errors[errorIndex(code)].Add(1)
	msg, err := SystemMessage(MessageTypeError, ErrorData{Code: code, Message: text})
	if err == nil {
		msg.Room = room
		c.Send(msg)
	}
}
