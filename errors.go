package realtime

import (
	"errors"

	"github.com/realtimehub/realtime/shard"
)

// Every sentinel error of the package. Each is returned (or wrapped once, at
// the API boundary, with what it concerns) by the calls its comment names;
// test for them with errors.Is. Clients never see these texts: they get the
// stable codes of protocol.go (ErrCode…) and a short message.
var (
	// ErrNotRegistered: the connection is not registered with the hub
	// (ShardedHub.Join).
	ErrNotRegistered = shard.ErrNotRegistered
	// ErrTooManyRooms: the connection is in as many rooms as allowed
	// (ShardedHub.Join, HandlerConfig.MaxRoomsPerConn).
	ErrTooManyRooms = shard.ErrTooManyRooms
	// ErrHubClosed: the hub's Run has returned; it takes no connections
	// (ShardedHub.Add).
	ErrHubClosed = errors.New("realtime: hub closed")
	// ErrHubRunning: Run was called while another Run is active or after it
	// returned (ShardedHub.Run).
	ErrHubRunning = errors.New("realtime: hub already run")
	// ErrHandlerClosed: the handler was shut down (Handler.Serve).
	ErrHandlerClosed = errors.New("realtime: handler shut down")
	// ErrShutdownTimeout: Shutdown's deadline passed before every connection
	// finished its close handshake; the rest were dropped (Handler.Shutdown).
	ErrShutdownTimeout = errors.New("realtime: shutdown deadline passed; remaining connections were dropped")
	// ErrNoSuchConnection: a direct message for a connection of this pod that
	// does not exist, or no longer does (RedisBroadcaster.Publish).
	ErrNoSuchConnection = errors.New("realtime: no such connection")
	// ErrNilMessage: Publish was given a nil message.
	ErrNilMessage = errors.New("realtime: nil message")
	// ErrEncode: a message could not be encoded to JSON (its Data is not
	// valid JSON); nobody got it (NewFrame, Broadcast, Publish).
	ErrEncode = errors.New("realtime: cannot encode message")
	// ErrFrameJSON: NewFrameJSON was given bytes that are not valid JSON.
	ErrFrameJSON = errors.New("realtime: frame payload is not valid JSON")
	// ErrBadUserID: a user ID that cannot be addressed: empty, over
	// MaxUserIDLength, or with control characters (Handler.PublishToUser,
	// DisconnectUser).
	ErrBadUserID = errors.New("realtime: user ID must be 1-256 bytes without control characters")
	// ErrBadPodID: a pod ID has characters other than letters, digits, '-'
	// and '_' (NewHandler panics with it).
	ErrBadPodID = errors.New("realtime: pod ID may hold only letters, digits, '-' and '_'")
)

// Errors that stay inside the package: reasons given to an HTTP client in a
// refused handshake (status text only), and control flow.
var (
	errOriginNotAllowed  = errors.New("origin not allowed")
	errUnauthorized      = errors.New("unauthorized")
	errHandshakeTooLarge = errors.New("handshake too large")
	errPipelineFull      = errors.New("realtime: publish pipeline full")
	// errHistoryRegressed: Redis gave a message an offset already
	// delivered (it lost recent writes); the message was not delivered.
	errHistoryRegressed = errors.New("realtime: Redis lost recent history")
	// errConnClosed: a join found its connection torn down meanwhile.
	errConnClosed = errors.New("realtime: connection closed")
	// errStopReading ends Feed after the peer's close frame.
	errStopReading = errors.New("stop reading")
)

// badRoomMessage is the message of a bad_room error, on the socket and in
// the server API.
const badRoomMessage = "room must be 1-128 characters of A-Z, a-z, 0-9, '-_.:@/'"
