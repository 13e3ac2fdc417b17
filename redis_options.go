package realtime

import (
	"time"

	"github.com/realtimehub/realtime/broadcast"
	"github.com/realtimehub/realtime/history"
)

// BroadcasterOption configures a RedisBroadcaster.
//
// Options are applied once, by NewRedisBroadcaster, before the broadcaster is
// used.
type BroadcasterOption func(*broadcasterOptions)

type broadcasterOptions struct {
	pod         string
	bus         broadcast.Options
	presenceTTL time.Duration
	history     history.Options
	noHistory   bool
}

// WithHistory sets how many messages each room keeps in Redis (a stream per
// room, trimmed to size) and for how long, for clients that rejoin with
// "since" (see Position); size -1 turns history off: room messages then
// carry no offset and are delivered at most once. Each pod also keeps the
// same bounds in memory for the rooms it serves, within 64 MiB, so that most
// rejoins are answered without reading Redis. Default: 100 messages, 5
// minutes; a room's position outlives its messages by 24 hours.
func WithHistory(size int, ttl time.Duration) BroadcasterOption {
	return func(o *broadcasterOptions) {
		o.noHistory = size < 0
		o.history.Size, o.history.TTL = size, ttl
	}
}

// WithPresenceTTL sets how long the presence entries of a pod that died keep
// counting (default 30 s); a live pod renews them every third of it.
func WithPresenceTTL(d time.Duration) BroadcasterOption {
	return func(o *broadcasterOptions) { o.presenceTTL = d }
}

// WithPodID sets the pod's ID (letters, digits, '-', '_'), which prefixes its
// connection and message IDs. A Handler using this broadcaster adopts it when
// its own PodID is empty. Default: 8 random hex digits.
func WithPodID(id string) BroadcasterOption { return func(o *broadcasterOptions) { o.pod = id } }

// WithPartitions sets how many partitions rooms are spread over (default
// 64). Every pod of a deployment must use the same number.
func WithPartitions(n int) BroadcasterOption {
	return func(o *broadcasterOptions) { o.bus.Partitions = n }
}

// WithChannelPrefix sets the prefix of every Redis channel (default "rt"), so
// that several deployments can share a Redis.
func WithChannelPrefix(p string) BroadcasterOption {
	return func(o *broadcasterOptions) { o.bus.Prefix = p }
}
