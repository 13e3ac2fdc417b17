package broadcast

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// The canary: every CanaryInterval a pod publishes a message to its own
// direct channel through Redis; its return is how Ready knows the pub/sub
// link delivers, not merely connects, and how long it took is the link's
// lag.

const canaryPrefix = "\x00canary:"

func (b *Bus) isCanary(m string) bool {
	if len(m) < len(canaryPrefix) || m[:len(canaryPrefix)] != canaryPrefix {
		return false
	}
	if sent, err := strconv.ParseInt(m[len(canaryPrefix):], 10, 64); err == nil && sent >= b.started.Load() {
		now := time.Now().UnixNano()
		b.lastCanary.Store(now)
		b.canaryRTT.Store(now - sent)
	}
	return true
}

func (b *Bus) canary(ctx context.Context) {
	if last := b.lastCanary.Load(); last != 0 && time.Since(time.Unix(0, last)) > 3*b.opts.CanaryInterval {
		b.brokenSince.Store(last) // confirmations before this may be from a connection that is gone
	}
	cctx, cancel := context.WithTimeout(ctx, b.opts.CanaryInterval)
	defer cancel()
	cmd := b.client.B().Spublish().Channel(b.DirectChannel(b.pod)).
		Message(canaryPrefix + strconv.FormatInt(time.Now().UnixNano(), 10)).Build()
	b.client.Do(cctx, cmd) // a failure shows as a late canary
}

// Ready returns nil if a canary sent through Redis came back within the last
// three canary intervals: the pub/sub link is delivering, not merely up.
func (b *Bus) Ready() error {
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	last := b.lastCanary.Load()
	if last == 0 {
		return ErrNoCanary
	}
	if age := time.Since(time.Unix(0, last)); age > 3*b.opts.CanaryInterval {
		return fmt.Errorf("%w (last canary %s ago)", ErrNotDelivering, age.Round(time.Millisecond))
	}
	return nil
}

// canaryAge returns how long ago the unix-nanosecond time last was, or 0.
func canaryAge(last int64) time.Duration {
	if last == 0 {
		return 0
	}
	return time.Since(time.Unix(0, last))
}
