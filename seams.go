package realtime

import (
	"context"
	"time"
)

// The parts of the package meet through the small interfaces below, never
// through a type assertion on a concrete type: a Hub or a Broadcaster of your
// own can offer any of them and get the same treatment as ours. Each is
// optional; the comment says what happens without it. ShardedHub implements
// RoomHub, FrameHub, RoomWatcher, Directory and ShutdownNotifier;
// RedisBroadcaster implements Relayer, Roster, PodNamer and PresenceRecorder.

// RoomHub is a Hub that can refuse a join and list a connection's rooms.
// Without it, a Handler keeps each connection's rooms itself and calls
// JoinRoom and LeaveRoom.
//
// Concurrency: every method may be called from several goroutines at once.
type RoomHub interface {
	// Join adds conn to room and reports whether it was added (false if it
	// was a member already). limit, when positive, is the most rooms conn
	// may be in; past it Join returns an error that wraps ErrTooManyRooms.
	Join(conn Connection, room string, limit int) (bool, error)
	// Leave removes conn from room and reports whether it was a member.
	Leave(conn Connection, room string) bool
	// Rooms returns the rooms conn is in.
	Rooms(conn Connection) []string
}

// FrameHub is a Hub that delivers an already encoded message, so that a
// Broadcaster encodes each message once per pod. Without it, a Broadcaster
// calls Broadcast and SendTo with the frame's Message.
//
// Concurrency: both methods may be called from several goroutines at once;
// they call SendFrame (or Send) without blocking.
type FrameHub interface {
	// BroadcastFrame delivers f to the local members of room (every local
	// connection if room is empty) and returns how many took it.
	BroadcastFrame(room string, f *Frame) int
	// SendFrameTo delivers f to the local connection connID and reports
	// whether it took it.
	SendFrameTo(connID string, f *Frame) bool
}

// RoomWatcher is a Hub that tells which rooms have local members, so that a
// Broadcaster listens only for those. Without it, a Broadcaster listens for
// every room.
//
// Concurrency: WatchRooms may be called at any time; fn may run on any
// goroutine that joins or leaves.
type RoomWatcher interface {
	// WatchRooms calls fn for every room with a local member now (active
	// true), then whenever a room gets its first local member (true) or
	// loses its last (false). fn must be quick and must not call the hub.
	WatchRooms(fn func(room string, active bool))
}

// Directory is a Hub that lists its connections, so that a Broadcaster can
// rebuild what it records about them (presence) after its store lost it.
//
// Concurrency: both methods may be called from several goroutines at once.
type Directory interface {
	// EachRoom calls fn with every room that has a member.
	EachRoom(fn func(room string))
	// EachConnection calls fn for every member of room (every connection if
	// room is empty). fn must not block or call the hub.
	EachConnection(room string, fn func(Connection))
}

// ShutdownNotifier is a Hub whose end a Handler can follow: when the hub's
// Run ends, it calls the functions registered here (a Handler registers its
// Shutdown). Without it, call Handler.Shutdown yourself.
//
// Concurrency: OnShutdown may be called from any goroutine, before the hub's
// Run ends.
type ShutdownNotifier interface {
	// OnShutdown registers fn to run when the hub shuts down, before it
	// closes the connections left.
	OnShutdown(fn func())
}

// Relayer is a Broadcaster that sends already encoded messages to the other
// pods only, the caller having delivered them to this pod's hub. A Handler
// with a Relayer delivers a client's message to this pod's members at once,
// on the socket worker, and hands the network part to its publish pipeline,
// so that a stalled Redis slows no local delivery. Without it, the pipeline
// calls Publish, which delivers locally too (late, while it is stalled).
//
// Concurrency: Relay may be called from several goroutines at once; it may
// wait on the network, up to ctx's deadline.
type Relayer interface {
	// Relay sends each frame to the other pods (a room message to the room,
	// a direct message to the pod that owns its target), keeping their
	// order, and sets errs[i] (len(errs) == len(frames)) for each that could
	// not be sent: an error wrapping ErrNoSuchConnection for a direct
	// message to a pod or connection that does not exist.
	Relay(ctx context.Context, frames []*Frame, errs []error)
}

// Roster is a Broadcaster that knows a room's users on every pod. A Handler
// answers a members query with it, off the socket workers; without it, with
// the users of this pod.
//
// Concurrency: RoomUsers may be called from several goroutines at once; it
// may wait on the network, up to ctx's deadline.
type Roster interface {
	// RoomUsers returns the distinct users with a connection in room.
	RoomUsers(ctx context.Context, room string) ([]string, error)
}

// PodNamer is a Broadcaster that routes direct messages by pod: a Handler
// with no PodID of its own adopts the broadcaster's, so that its connection
// IDs name the pod the broadcaster routes to.
//
// Concurrency: PodID may be called from any goroutine and never changes.
type PodNamer interface {
	// PodID returns the pod's ID.
	PodID() string
}

// PresenceRecorder is a Broadcaster that keeps presence across pods: a
// Handler tells it when a user's first connection on this pod arrives and
// its last one leaves, and when a user's connection joins or leaves a room.
// The calls must not block (a Handler makes them on its socket workers).
//
// Concurrency: both methods may be called from several goroutines at once.
type PresenceRecorder interface {
	// RecordOnline records that user now has (true) or no longer has
	// (false) a connection on this pod.
	RecordOnline(user string, online bool)
	// RecordMember adds delta to the count of user's connections in room.
	RecordMember(room, user string, delta int64)
}

// PresenceTracker is a Broadcaster that keeps presence across pods per
// connection: it decides when a user went offline everywhere (so that a
// user still connected on another pod is never announced offline) and
// answers presence queries for every pod. A Handler with one calls it
// instead of PresenceRecorder.RecordOnline. Without it, presence is this
// pod's.
//
// Concurrency: every method may be called from several goroutines at once.
// Track and Settle calls must not block (a Handler makes them on its socket
// workers and timers); their callbacks may run later on any goroutine.
type PresenceTracker interface {
	// TrackConnection adds delta (+1 or -1) to user's connections on this
	// pod. On +1, if user had been announced offline, back is called with
	// the rooms that were told so (each room is given to one pod only), so
	// that they hear it is back.
	TrackConnection(user string, delta int64, back func(rooms []string))
	// SettleOffline is called debounce (PresenceDebounce) after user's last
	// connection on this pod closed, with the rooms its connections here
	// were in. If user has no connection on any live pod and its last one
	// anywhere closed at least debounce ago, announce is called with the
	// rooms that must hear "offline" (each given to one pod only); if it is
	// still connected elsewhere, the rooms are kept for the pod whose
	// connection goes last; a failure is retried.
	SettleOffline(user string, rooms []string, debounce time.Duration, announce func(rooms []string))
	// TrackStatus records the status a client of user set.
	TrackStatus(user, status string)
	// UserConnections returns user's connections on every live pod.
	UserConnections(ctx context.Context, user string) (int, error)
	// RoomMembers returns the users with a connection in room on every live
	// pod, with their connections there and status.
	RoomMembers(ctx context.Context, room string) ([]MemberInfo, error)
}

// UserTarget is what a UserRouter delivers to on each pod: the Handler's
// connections of a user. Handler implements it.
//
// Concurrency: both methods may be called from several goroutines at once;
// they only queue.
type UserTarget interface {
	// DeliverToUser queues f to every connection of user on this pod and
	// returns how many took it.
	DeliverToUser(user string, f *Frame) int
	// CloseUser closes every connection of user on this pod with
	// CloseForbidden and returns how many.
	CloseUser(user string) int
}

// UserRouter is a Broadcaster that reaches a user's connections on every
// pod. A Handler registers itself with RouteUsers when it is created.
// Without it, PublishToUser and DisconnectUser reach this pod only.
//
// Concurrency: every method may be called from several goroutines at once;
// SendToUser and DisconnectUser may wait on the network, up to ctx's
// deadline.
type UserRouter interface {
	// RouteUsers sets the target of what other pods send to this pod's
	// users.
	RouteUsers(local UserTarget)
	// SendToUser delivers f to every connection of user on every live pod
	// (this one through the UserTarget).
	SendToUser(ctx context.Context, user string, f *Frame) error
	// DisconnectUser closes every connection of user on every live pod.
	DisconnectUser(ctx context.Context, user string) error
}
