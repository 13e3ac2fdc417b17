package realtime

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// presenceCounts counts each user's connections on this handler, so that
// "online" and "offline" mean a user's first connection and last one.
type presenceCounts struct {
	shards [16]struct {
		mu sync.Mutex
		n  map[string]int
	}
}

// add counts one more connection of user and reports whether it is the first.
func (p *presenceCounts) add(user string) bool {
	s := &p.shards[xxhash.Sum64String(user)%16]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	s.n[user]++
	return s.n[user] == 1
}

// remove counts one connection less and reports whether it was the last.
func (p *presenceCounts) remove(user string) bool {
	s := &p.shards[xxhash.Sum64String(user)%16]
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.n[user]
	switch {
	case !ok:
		return false // never counted: nothing to undo
	case n <= 1:
		delete(s.n, user)
		return true
	}
	s.n[user] = n - 1
	return false
}

// online reports whether user has a connection on this handler.
func (p *presenceCounts) online(user string) bool {
	s := &p.shards[xxhash.Sum64String(user)%16]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[user] > 0
}

// userOnline records c's arrival; true if it is its user's first connection.
// Anonymous connections have no presence.
func (h *Handler) userOnline(c *conn) bool {
	return c.userID != "" && h.presence.add(c.userID)
}

// userOffline records c's departure; true if it was its user's last.
func (h *Handler) userOffline(c *conn) bool {
	return c.userID != "" && h.presence.remove(c.userID)
}

// Online reports whether user has at least one connection on this handler.
func (h *Handler) Online(user string) bool { return h.presence.online(user) }

// validStatus reports whether s is a presence status a client may set.
func validStatus(s string) bool {
	return s == PresenceOnline || s == PresenceAway || s == PresenceOffline
}

// recordOnline and recordMember tell a Broadcaster that keeps presence
// across pods (a PresenceRecorder, such as RedisBroadcaster) about this pod's
// users.
func (h *Handler) recordOnline(user string, online bool) {
	if h.recorder != nil && user != "" {
		h.recorder.RecordOnline(user, online)
	}
}

func (h *Handler) recordMember(room string, c *conn, delta int64) {
	if h.recorder != nil && c.userID != "" {
		h.recorder.RecordMember(room, c.userID, delta)
	}
}
