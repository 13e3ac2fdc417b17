package realtime

import (
	"encoding/json"
	"time"
)

// Presence events: a user's rooms hear "offline" PresenceDebounce after its
// last connection anywhere closed (not at all if it came back meanwhile: a
// page reload is no offline-online flap), and, when it comes back, the rooms
// that heard "offline" hear "online". Across pods a PresenceTracker (the
// RedisBroadcaster) decides, so that a user connected on another pod is
// never announced offline and each room hears each change once; without one
// the handler decides alone (right for a single pod).

// rememberOffline is how long a single pod remembers the rooms told a user
// is offline, to tell them when it comes back.
const rememberOffline = 24 * time.Hour

// userArrived indexes c under its user and records the connection.
func (h *Handler) userArrived(c *conn) {
	user := c.UserID()
	if user == "" {
		return // anonymous connections have no presence
	}
	var track func()
	if h.tracker != nil {
		track = func() {
			h.tracker.TrackConnection(user, +1, func(rooms []string) { h.announcePresence(user, rooms, PresenceOnline) })
		}
	}
	first, back := h.users.add(c, user, track)
	if h.tracker == nil && len(back) > 0 {
		h.announcePresence(user, back, PresenceOnline)
	}
	if first && h.tracker == nil {
		h.recordOnline(user, true)
	}
}

// userLeft takes c out of the index; rooms (c's, when it closed) hear the
// offline event if it was its user's last connection and the user does not
// come back within PresenceDebounce.
func (h *Handler) userLeft(c *conn, rooms []string) {
	user := c.UserID()
	if user == "" {
		return
	}
	var track func()
	if h.tracker != nil {
		track = func() { h.tracker.TrackConnection(user, -1, nil) }
	}
	last := h.users.remove(c, user, rooms, h.cfg.PresenceDebounce, func() { h.settleOffline(user) }, track)
	if h.tracker == nil && last {
		h.recordOnline(user, false)
	}
}

// settleOffline runs PresenceDebounce after user's last connection here
// closed, if none came since.
func (h *Handler) settleOffline(user string) {
	if h.eng.stopping.Load() {
		return // a pod going away: its users are not offline, they move
	}
	if h.tracker != nil {
		if rooms, ok := h.users.takeGone(user, 0, nil); ok {
			h.tracker.SettleOffline(user, rooms, h.cfg.PresenceDebounce, func(rooms []string) { h.announcePresence(user, rooms, PresenceOffline) })
		}
		return
	}
	// Told under the user's lock, and kept for the user's return: a return
	// meanwhile waits, and its online follows this offline.
	h.users.takeGone(user, rememberOffline, func(rooms []string) { h.announcePresence(user, rooms, PresenceOffline) })
}

// announcePresence tells each of rooms that user has status; big rooms
// (over JoinEventsMaxMembers members here) get no per-member events.
func (h *Handler) announcePresence(user string, rooms []string, status string) {
	if h.eng.stopping.Load() && status == PresenceOffline {
		return // a pod going away: its users are not offline, they move
	}
	data, _ := json.Marshal(PresenceData{Status: status, UserID: user})
	for _, room := range rooms {
		if h.hub.RoomCount(room) > h.cfg.JoinEventsMaxMembers {
			continue
		}
		h.deliver(nil, &Message{ID: newMessageID(h.cfg.PodID), Type: MessageTypePresence, Room: room,
			From: "system", UserID: user, Data: data, Timestamp: time.Now().UTC()})
	}
}

// recordOnline tells a PresenceRecorder that is not a PresenceTracker about
// this pod's users.
func (h *Handler) recordOnline(user string, online bool) {
	if h.recorder != nil {
		h.recorder.RecordOnline(user, online)
	}
}

// recordMember tells a PresenceRecorder about c's memberships.
func (h *Handler) recordMember(room string, c *conn, delta int64) {
	if u := c.UserID(); h.recorder != nil && u != "" {
		h.recorder.RecordMember(room, u, delta)
	}
}

// CountUser runs fn with user's connections on this pod, under the lock
// that orders them with the TrackConnection calls for user: a write fn
// queues (an absolute count) lands in order with the +1s and -1s. A
// RedisBroadcaster repairs its entry this way after Redis lost a write.
func (h *Handler) CountUser(user string, fn func(n int)) { h.users.locked(user, fn) }
