package realtime

import (
	"context"
	"errors"
	"strconv"
	"time"
)

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
	h.deliver(c, &Message{ID: newMessageID(h.cfg.PodID), Type: in.Type, Room: in.Room, From: c.id, Data: in.Data, Timestamp: time.Now().UTC()})
}

// direct sends a client's message to one connection: through the
// Broadcaster when there is one (it delivers locally or to the pod that owns
// the connection, and reports a local connection that is not there), else
// straight to the hub. Either way the target is looked up once.
func (h *Handler) direct(c *conn, in *inbound) {
	msg := &Message{ID: newMessageID(h.cfg.PodID), Type: in.Type, From: c.id, To: in.To, Data: in.Data, Timestamp: time.Now().UTC()}
	if h.cfg.Broadcaster != nil {
		h.deliver(c, msg)
		return
	}
	if !h.hub.SendTo(in.To, msg) {
		h.sendError(c, ErrCodeNotFound, "no connection "+strconv.Quote(in.To))
	}
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
		// The error's text (addresses, channels) is for the log, not the client.
		h.sendError(c, ErrCodePublishFailed, "not delivered to the other pods; try again")
	}
}
