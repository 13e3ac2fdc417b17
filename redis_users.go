package realtime

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/realtimehub/realtime/broadcast"
)

// Users across pods: RedisBroadcaster is a PresenceTracker (through
// broadcast.Presence) and a UserRouter: a message to a user, or its
// disconnection, goes to the direct channel of every live pod, as an
// envelope whose key is "@u:<user>" or "@x:<user>" (the user query-escaped,
// so that it holds no newline).

// userTargetBox holds the UserTarget a Handler registered.
type userTargetBox struct{ t UserTarget }

// RouteUsers sets where user messages and disconnections for this pod go
// (a Handler calls it); see UserRouter.
func (b *RedisBroadcaster) RouteUsers(local UserTarget) {
	b.users.Store(&userTargetBox{t: local})
	if c, ok := local.(interface{ CountUser(string, func(int)) }); ok {
		b.presence.SetUserCounter(c.CountUser) // repairs ordered with the +1s and -1s
	}
}

// SendToUser delivers f to every connection of user on every live pod; see
// UserRouter. Pods that end meanwhile are not an error. If the live pods
// cannot be read, nothing is delivered (a retry does not duplicate).
func (b *RedisBroadcaster) SendToUser(ctx context.Context, user string, f *Frame) error {
	pods, err := b.presence.LivePods(ctx)
	if err != nil {
		return err
	}
	if t := b.users.Load(); t != nil {
		t.t.DeliverToUser(user, f)
	}
	return b.toPods(ctx, pods, "@u:"+url.QueryEscape(user), f.Payload())
}

// DisconnectUser closes every connection of user on every live pod with
// CloseForbidden; see UserRouter.
func (b *RedisBroadcaster) DisconnectUser(ctx context.Context, user string) error {
	pods, err := b.presence.LivePods(ctx)
	if err != nil {
		return err
	}
	if t := b.users.Load(); t != nil {
		t.t.CloseUser(user)
	}
	return b.toPods(ctx, pods, "@x:"+url.QueryEscape(user), []byte("{}"))
}

// toPods sends an envelope with key and payload to every other pod of pods.
// The envelopes go in one pipelined round trip; a pod that just ended is no
// error.
func (b *RedisBroadcaster) toPods(ctx context.Context, pods []string, key string, payload []byte) error {
	env := b.envelopeOf(key, payload)
	items := make([]broadcast.Item, 0, len(pods))
	for _, pod := range pods {
		if pod != b.pod {
			items = append(items, broadcast.Item{Pod: pod, Payload: env})
		}
	}
	out := make([]error, len(items))
	b.bus.PublishBatch(ctx, items, out)
	var errs []error
	for i, err := range out {
		if err != nil && !errors.Is(err, broadcast.ErrNoPod) {
			errs = append(errs, fmt.Errorf("pod %s: %w", items[i].Pod, err))
		}
	}
	return errors.Join(errs...)
}

// receiveUser handles a user envelope from another pod.
func (b *RedisBroadcaster) receiveUser(origin, key string, data []byte) {
	t := b.users.Load()
	kind, escaped, ok := strings.Cut(key[1:], ":")
	user, err := url.QueryUnescape(escaped)
	if t == nil || !ok || err != nil || origin == b.pod {
		if !ok || err != nil {
			b.decodeErrors.Add(1)
		}
		return
	}
	switch kind {
	case "u":
		f, err := NewFrameJSON(data)
		if err != nil {
			b.decodeErrors.Add(1)
			return
		}
		b.delivered.Add(1)
		t.t.DeliverToUser(user, f)
	case "x":
		t.t.CloseUser(user)
	default:
		b.decodeErrors.Add(1)
	}
}

// TrackConnection counts user's connections on this pod; see
// PresenceTracker. It queues the write and never blocks.
func (b *RedisBroadcaster) TrackConnection(user string, delta int64, back func(rooms []string)) {
	b.presence.AddConnection(user, delta, back)
}

// SettleOffline decides whether user is offline everywhere; see
// PresenceTracker. It queues the work and never blocks.
func (b *RedisBroadcaster) SettleOffline(user string, rooms []string, debounce time.Duration, announce func(rooms []string)) {
	b.presence.Settle(user, rooms, debounce, announce)
}

// TrackStatus records the status a client of user set; see
// PresenceTracker.
func (b *RedisBroadcaster) TrackStatus(user, status string) { b.presence.SetStatus(user, status) }

// UserConnections returns user's connections on every live pod.
func (b *RedisBroadcaster) UserConnections(ctx context.Context, user string) (int, error) {
	return b.presence.Connections(ctx, user)
}

// RoomMembers returns the users in room on every live pod, with their
// connections there and status.
func (b *RedisBroadcaster) RoomMembers(ctx context.Context, room string) ([]MemberInfo, error) {
	ms, err := b.presence.RoomMembers(ctx, room)
	if err != nil {
		return nil, err
	}
	out := make([]MemberInfo, len(ms))
	for i, m := range ms {
		out[i] = MemberInfo{UserID: m.User, Connections: m.Connections, Status: m.Status}
	}
	return out, nil
}
