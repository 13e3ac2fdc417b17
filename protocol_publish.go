package realtime

import (
	"context"
	"errors"
	"fmt"
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
	if err := h.authorizePublish(c, in.Room, in.Type); err != nil {
		h.sendError(c, ErrCodeForbidden, "not allowed to send to "+strconv.Quote(in.Room))
		return
	}
	h.eng.batches.flushRoom(in.Room) // the room's join events first: c's own may be waiting
	h.deliver(c, &Message{ID: newMessageID(h.cfg.PodID), Type: in.Type, Room: in.Room, From: c.id, UserID: c.UserID(),
		Data: in.Data, Timestamp: time.Now().UTC()})
}

// direct sends a client's message to one connection: straight to the hub
// when this pod owns it (or there is no Broadcaster), else through the
// publish pipeline to the pod that does. Either way the target is looked up
// once, and a target that does not exist gets the sender not_found.
func (h *Handler) direct(c *conn, in *inbound) {
	msg := &Message{ID: newMessageID(h.cfg.PodID), Type: in.Type, From: c.id, UserID: c.UserID(), To: in.To, Data: in.Data, Timestamp: time.Now().UTC()}
	if pod := podOf(in.To); h.cfg.Broadcaster != nil && pod != "" && pod != h.cfg.PodID {
		h.relay(c, in.To, msg)
		return
	}
	if !h.hub.SendTo(in.To, msg) {
		h.sendError(c, ErrCodeNotFound, "no connection "+strconv.Quote(in.To))
	}
}

// deliver sends a room message or event: to the hub when there is no
// Broadcaster; else to this pod's members at once (when the Broadcaster is a
// Relayer) and to the other pods through the publish pipeline.
func (h *Handler) deliver(c *conn, msg *Message) {
	if h.cfg.Broadcaster == nil {
		if h.mem != nil && keepsHistory(msg) {
			if err := h.mem.append(msg); err != nil { // offset given, kept and delivered in order
				h.logger.Error("realtime: publish", "type", msg.Type, "err", err)
			}
			return
		}
		h.hub.Broadcast(msg)
		return
	}
	h.relay(c, msg.Room, msg)
}

// relay encodes msg once, delivers a room message locally if the
// Broadcaster is a Relayer, and queues msg on the pipeline lane of key. A
// full lane fails at once (publish_failed to c).
func (h *Handler) relay(c *conn, key string, msg *Message) {
	f, err := NewFrame(msg)
	if err != nil {
		h.logger.Error("realtime: publish", "type", msg.Type, "err", err)
		return
	}
	var local func()
	// A message the broadcaster keeps in history is delivered here, as on
	// every pod, once it has its place (Relay).
	if h.eng.pipe.relayer != nil && msg.To == "" && (h.hist == nil || !keepsHistory(msg)) {
		local = func() { h.deliverLocal(msg.Room, f) }
	}
	if !h.eng.pipe.submit(key, pubJob{f: f, from: c}, local) {
		h.publishFailed(c, msg, errPipelineFull)
	}
}

// deliverLocal hands f to this pod's members of room.
func (h *Handler) deliverLocal(room string, f *Frame) {
	if h.frames != nil {
		h.frames.BroadcastFrame(room, f)
		return
	}
	h.hub.Broadcast(f.Message())
}

// publishFailed tells c (if it is still there) that msg did not reach the
// other pods, or that its direct target does not exist.
func (h *Handler) publishFailed(c *conn, msg *Message, err error) {
	if errors.Is(err, ErrNoSuchConnection) {
		if c != nil {
			h.sendError(c, ErrCodeNotFound, "no connection "+strconv.Quote(msg.To))
		}
		return
	}
	h.stats.publishErrors.Add(1)
	h.logger.Warn("realtime: publish", "room", msg.Room, "type", msg.Type, "err", err)
	if c != nil {
		// The error's text (addresses, channels) is for the log, not the client.
		h.sendError(c, ErrCodePublishFailed, "not delivered to the other pods; try again")
	}
}

// Publish sends msg from server code as clients' messages go: to every
// member of msg.Room on every pod (through the Broadcaster), kept in the
// room's history with its offset, or to the connection msg.To. It fills in
// a missing ID, Timestamp and From ("system"). Unlike Hub.Broadcast, which
// reaches this pod's members only and keeps nothing, it is what server code
// of a deployment of several pods should call. An error means some members
// may not have got it (see the Broadcaster's Publish). When the room keeps
// history, msg.Offset and msg.Epoch are set to its place (with a
// RedisBroadcaster or none).
func (h *Handler) Publish(ctx context.Context, msg *Message) error {
	if msg == nil {
		return ErrNilMessage
	}
	h.stamp(msg)
	switch {
	case h.cfg.Broadcaster != nil:
		return h.cfg.Broadcaster.Publish(ctx, msg)
	case msg.To != "":
		if !h.hub.SendTo(msg.To, msg) {
			return fmt.Errorf("%w: %q", ErrNoSuchConnection, msg.To)
		}
	case h.mem != nil && keepsHistory(msg):
		return h.mem.append(msg)
	default:
		h.hub.Broadcast(msg)
	}
	return nil
}

// stamp fills in what server code may leave out of a message it publishes:
// an ID, the time, and "system" as the sender.
func (h *Handler) stamp(msg *Message) {
	if msg.ID == "" {
		msg.ID = newMessageID(h.cfg.PodID)
	}
	if msg.Timestamp.IsZero() {
		msg.Timestamp = time.Now().UTC()
	}
	if msg.From == "" {
		msg.From = "system"
	}
}
