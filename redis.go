package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/realtimehub/realtime/broadcast"
)

// RedisBroadcaster is the Broadcaster over Redis sharded pub/sub (package
// broadcast, rueidis). Publish delivers a message to the local hub at once
// and sends one envelope to the other pods; Run receives the other pods'
// envelopes and hands each to the local hub once. A pod's own envelopes are
// skipped when they come back, so every pod delivers every message exactly
// once, and local delivery goes on while Redis is away.
//
// Rooms map to partitions; a pod listens only to the partitions in which its
// hub has rooms (with a hub that is a RoomWatcher, as ShardedHub is; another
// Hub listens to all). A message is encoded once on the pod that publishes
// it: the envelope carries the frame's JSON, which the other pods wrap in a
// frame without decoding (with a hub that is a FrameHub). Messages
// one pod publishes to one room reach every pod in that order. Direct
// messages go to the pod named by the target connection ID's prefix.
// Redis pub/sub is at-most-once: what is published while a pod is cut off
// from Redis does not reach it.
//
// All methods may be called concurrently.
type RedisBroadcaster struct {
	hub      Hub
	frames   FrameHub  // the hub's, or nil: then Broadcast and SendTo
	dir      Directory // the hub's, or nil: then no presence rebuild
	bus      *broadcast.Bus
	presence *broadcast.Presence
	hist     *redisHistory // room history, or nil when off
	pod      string
	logger   *slog.Logger
	users    atomic.Pointer[userTargetBox] // this pod's Handler, for user messages

	mu      sync.Mutex
	watched map[string]struct{} // rooms whose partition is watched for them

	delivered, skipped, decodeErrors atomic.Uint64
	dropResync                       []atomic.Bool // per partition: a resync after a drop is due
}

var (
	_ Broadcaster      = (*RedisBroadcaster)(nil)
	_ PodNamer         = (*RedisBroadcaster)(nil)
	_ PresenceRecorder = (*RedisBroadcaster)(nil)
	_ Relayer          = (*RedisBroadcaster)(nil)
	_ Roster           = (*RedisBroadcaster)(nil)
	_ PresenceTracker  = (*RedisBroadcaster)(nil)
	_ UserRouter       = (*RedisBroadcaster)(nil)
)

// NewRedisBroadcaster returns a broadcaster that links hub to the other pods
// through client, which may be a single Redis or a Redis Cluster (sharded
// pub/sub needs Redis 7). Create the client with DisableCache: true unless
// client-side caching is wanted. A nil logger means slog.Default().
func NewRedisBroadcaster(client rueidis.Client, hub Hub, logger *slog.Logger, opts ...BroadcasterOption) *RedisBroadcaster {
	if logger == nil {
		logger = slog.Default()
	}
	var o broadcasterOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.pod == "" {
		o.pod = randomPodID()
	}
	o.bus.Logger = logger
	b := &RedisBroadcaster{hub: hub, pod: o.pod, logger: logger, watched: map[string]struct{}{}}
	rw, watcher := hub.(RoomWatcher)
	if !o.noHistory && watcher { // a pod's log follows the rooms its hub says it has
		b.hist = newRedisHistory(b, o.history)
		o.bus.OnSubscribed = b.hist.resyncPartition
		o.bus.OnDrop = b.dropped
	}
	b.frames, _ = hub.(FrameHub)
	b.dir, _ = hub.(Directory)
	b.bus = broadcast.New(client, o.pod, o.bus, b.receive)
	b.dropResync = make([]atomic.Bool, b.bus.Partitions())
	b.presence = broadcast.NewPresence(client, o.bus.Prefix, o.pod, o.presenceTTL, logger, b.snapshot)
	b.bus.Watch("") // room "": broadcasts to everyone reach every pod
	if watcher {
		rw.WatchRooms(b.roomChanged)
	} else {
		b.bus.WatchAll()
	}
	return b
}

// roomChanged keeps the partitions watched in step with the hub's rooms. It
// runs under the hub's room lock: Watch and Unwatch only count.
func (b *RedisBroadcaster) roomChanged(room string, active bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, have := b.watched[room]
	switch {
	case active && !have:
		b.watched[room] = struct{}{}
		if b.hist != nil {
			b.hist.ref(room, +1)
		} else {
			b.bus.Watch(room)
		}
	case !active && have:
		delete(b.watched, room)
		if b.hist != nil {
			b.hist.ref(room, -1)
		} else {
			b.bus.Unwatch(room)
		}
	}
}

// roomHistory returns the broadcaster's room history, or nil when it keeps
// none; a Handler using the broadcaster uses it.
func (b *RedisBroadcaster) roomHistory() historian {
	if b.hist == nil {
		return nil
	}
	return b.hist
}

// dropped is told that a payload of partition p was lost to a full queue:
// the partition's rooms are read again from Redis, once per burst of drops.
func (b *RedisBroadcaster) dropped(p int) {
	if b.dropResync[p].Swap(true) {
		return
	}
	time.AfterFunc(50*time.Millisecond, func() {
		b.dropResync[p].Store(false)
		b.hist.resyncPartition(p)
	})
}

// PodID returns the pod's ID.
func (b *RedisBroadcaster) PodID() string { return b.pod }

// Publish delivers msg to the local hub and sends it to the other pods,
// encoding it once for both. It gives msg an ID if it has none. A room
// message that the room keeps in history is appended to it first, and
// delivered (here too) once it has its place; Publish then sets msg.Offset
// and msg.Epoch. A direct
// message (msg.To set) goes only to the pod that owns the connection; for
// this pod's own connections it returns an error wrapping
// ErrNoSuchConnection if the connection is not there. An error from Redis is
// returned (and counted): local members got the message, other pods did not.
func (b *RedisBroadcaster) Publish(ctx context.Context, msg *Message) error {
	if msg == nil {
		return ErrNilMessage
	}
	if msg.ID == "" {
		msg.ID = newMessageID(b.pod)
	}
	if b.hist != nil && keepsHistory(msg) {
		msg.Offset, msg.Epoch = 0, "" // a Message published again: its place is given anew
	}
	f, err := NewFrame(msg)
	if err != nil {
		return err
	}
	if msg.To != "" {
		return b.publishDirect(ctx, msg.To, f)
	}
	if b.hist != nil && keepsHistory(msg) {
		var errs [1]error
		pos := b.appendHistory(ctx, []*Frame{f}, []int{0}, errs[:])
		if errs[0] == nil {
			msg.Offset, msg.Epoch = pos.Offset, pos.Epoch // its place, for the caller
		}
		return errs[0]
	}
	b.deliverRoom(msg.Room, f)
	return b.bus.Publish(ctx, msg.Room, b.envelope(msg.Room, f))
}

// publishDirect delivers f to the connection to: here if this pod owns it,
// else through the owning pod's direct channel. A target on a pod that does
// not exist (nobody listens on its channel) is ErrNoSuchConnection, as a
// missing local one is.
func (b *RedisBroadcaster) publishDirect(ctx context.Context, to string, f *Frame) error {
	target := podOf(to)
	if target != b.pod && target != "" {
		return noSuchPod(b.bus.PublishDirect(ctx, target, b.envelope(to, f)), to)
	}
	if !b.deliverTo(to, f) {
		return fmt.Errorf("%w: %q", ErrNoSuchConnection, to)
	}
	return nil
}

// noSuchPod turns the bus's "nobody listens" into ErrNoSuchConnection.
func noSuchPod(err error, to string) error {
	if errors.Is(err, broadcast.ErrNoPod) {
		return fmt.Errorf("%w: %q (no pod %q)", ErrNoSuchConnection, to, podOf(to))
	}
	return err
}

// Relay sends frames, already delivered to this pod's hub by the caller, to
// the other pods, in one pipelined round trip and in order; see Relayer. A
// direct message for this pod's own connection is delivered here.
func (b *RedisBroadcaster) Relay(ctx context.Context, frames []*Frame, errs []error) {
	items := make([]broadcast.Item, 0, len(frames))
	idx := make([]int, 0, len(frames)) // items[k] is frames[idx[k]]
	var kept []int                     // frames for history
	for i, f := range frames {
		errs[i] = nil
		m := f.Message()
		switch target := podOf(m.To); {
		case b.hist != nil && keepsHistory(m):
			kept = append(kept, i)
			continue
		case m.To == "":
			items = append(items, broadcast.Item{Key: m.Room, Payload: b.envelope(m.Room, f)})
		case target == b.pod || target == "":
			if !b.deliverTo(m.To, f) {
				errs[i] = fmt.Errorf("%w: %q", ErrNoSuchConnection, m.To)
			}
			continue
		default:
			items = append(items, broadcast.Item{Pod: target, Payload: b.envelope(m.To, f)})
		}
		idx = append(idx, i)
	}
	if len(kept) > 0 {
		b.appendHistory(ctx, frames, kept, errs)
	}
	if len(items) == 0 {
		return
	}
	out := make([]error, len(items))
	b.bus.PublishBatch(ctx, items, out)
	for k, err := range out {
		errs[idx[k]] = noSuchPod(err, frames[idx[k]].Message().To)
	}
}

// envelope is "<origin pod>\n<key>\n<message JSON>", where key is the room
// (or, for a direct message, the target connection). The key stands outside
// the JSON so that a pod can drop an envelope for a room it has no member in
// without looking at the JSON: a partition carries many rooms. A message
// kept in history has "<offset> <epoch>\n" before its JSON (the Redis script
// writes it: broadcast.Bus.Append).
func (b *RedisBroadcaster) envelope(key string, f *Frame) []byte {
	return b.envelopeOf(key, f.Payload())
}

// envelopeOf is the envelope of key and data (the JSON of a message, or of a
// user command).
func (b *RedisBroadcaster) envelopeOf(key string, data []byte) []byte {
	env := make([]byte, 0, len(b.pod)+len(key)+2+len(data))
	env = append(env, b.pod...)
	env = append(env, '\n')
	env = append(env, key...)
	env = append(env, '\n')
	return append(env, data...)
}

// receive hands another pod's envelope to the local hub, as a frame made
// from the JSON it carries: no pod but the origin encodes the message.
func (b *RedisBroadcaster) receive(direct bool, env []byte) {
	origin, rest, ok1 := bytes.Cut(env, []byte{'\n'})
	key, data, ok2 := bytes.Cut(rest, []byte{'\n'})
	if !ok1 || !ok2 {
		b.decodeErrors.Add(1)
		return
	}
	if direct && len(key) > 0 && key[0] == '@' {
		b.receiveUser(string(origin), string(key), data)
		return
	}
	if string(origin) == b.pod {
		// Delivered here when it was published (or, with history, from the
		// append's reply; one whose reply was lost shows as a gap at the
		// next message or resubscription, and is read from the stream).
		return
	}
	positioned := len(data) > 0 && data[0] >= '0' && data[0] <= '9'
	if positioned && b.hist != nil {
		b.hist.receive(string(key), data) // for the rooms the pod serves, joins in progress included
		return
	}
	if !direct && len(key) > 0 && b.hub.RoomCount(string(key)) == 0 {
		b.skipped.Add(1) // a room of this partition with no member here
		return
	}
	if positioned { // kept by pods with history; this one keeps none: delivered as they come
		if !eachPositioned(data, func(pos Position, payload []byte) {
			if !json.Valid(payload) {
				b.decodeErrors.Add(1)
				return
			}
			b.delivered.Add(1)
			b.deliverRoom(string(key), newPositionedFrame(payload, string(key), pos.Offset, pos.Epoch))
		}) {
			b.decodeErrors.Add(1)
		}
		return
	}
	f, err := NewFrameJSON(data)
	if err != nil {
		b.decodeErrors.Add(1)
		b.logger.Warn("realtime: undecodable envelope from Redis", "origin", string(origin), "err", err)
		return
	}
	b.delivered.Add(1)
	if !direct {
		b.deliverRoom(string(key), f)
		return
	}
	to := string(key)
	if to == "" {
		to = f.Message().To // an envelope from a pod that kept the target only in the JSON
	}
	b.deliverTo(to, f)
}

// deliverRoom hands f to the local members of room.
func (b *RedisBroadcaster) deliverRoom(room string, f *Frame) {
	if b.frames != nil {
		b.frames.BroadcastFrame(room, f)
		return
	}
	b.hub.Broadcast(f.Message())
}

// deliverTo hands f to the local connection id.
func (b *RedisBroadcaster) deliverTo(id string, f *Frame) bool {
	if b.frames != nil {
		return b.frames.SendFrameTo(id, f)
	}
	return b.hub.SendTo(id, f.Message())
}

// Run receives envelopes from the other pods and keeps this pod's presence
// entries alive until ctx ends. Subscriptions come back by themselves after
// Redis returns, and presence entries are rewritten if Redis lost them.
func (b *RedisBroadcaster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { b.presence.Run(ctx) })
	if b.hist != nil {
		wg.Go(func() { b.hist.run(ctx) })
	}
	err := b.bus.Run(ctx)
	wg.Wait()
	return err
}

// Online reports whether user has a connection on any live pod.
func (b *RedisBroadcaster) Online(ctx context.Context, user string) (bool, error) {
	return b.presence.Online(ctx, user)
}

// RoomUsers returns the users with a connection in room, on every live pod.
func (b *RedisBroadcaster) RoomUsers(ctx context.Context, room string) ([]string, error) {
	return b.presence.RoomUsers(ctx, room)
}

// RecordOnline does nothing: a RedisBroadcaster is a PresenceTracker, so
// the Handler counts a user's connections with TrackConnection instead (a
// write here would overwrite that count). It stays to satisfy
// PresenceRecorder, whose RecordMember it uses.
func (b *RedisBroadcaster) RecordOnline(user string, online bool) {}

// RecordMember counts user's connections in room on this pod by delta; see
// PresenceRecorder. It queues the write and never blocks.
func (b *RedisBroadcaster) RecordMember(room, user string, delta int64) {
	b.presence.AddMember(room, user, delta)
}

// snapshot returns this pod's users (once per connection) and the users of each of its rooms, from
// the hub, for the presence registry to rewrite after Redis lost it.
func (b *RedisBroadcaster) snapshot() (users []string, rooms map[string][]string) {
	if b.dir == nil {
		return nil, nil
	}
	b.dir.EachConnection("", func(c Connection) {
		if u := c.UserID(); u != "" {
			users = append(users, u) // once per connection: the count
		}
	})
	var names []string
	b.dir.EachRoom(func(room string) { names = append(names, room) })
	rooms = make(map[string][]string, len(names))
	for _, room := range names {
		b.dir.EachConnection(room, func(c Connection) {
			if u := c.UserID(); u != "" {
				rooms[room] = append(rooms[room], u)
			}
		})
	}
	return users, rooms
}

// Listening reports whether this pod now receives what other pods publish to
// room (Redis confirmed the subscription to its partition).
func (b *RedisBroadcaster) Listening(room string) bool { return b.bus.Listening(room) }

// Ready returns nil if the pub/sub link really delivers: a canary this pod
// sent itself through Redis came back recently. It is what /readyz reports.
func (b *RedisBroadcaster) Ready() error { return b.bus.Ready() }

// podOf returns the pod prefix of a connection ID ("<pod>.<handler>-<n>").
func podOf(connID string) string {
	pod, _, ok := strings.Cut(connID, ".")
	if !ok {
		return ""
	}
	return pod
}
