package realtime

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// admission is the token bucket every upgrade passes, on both doors: at most
// AcceptRate upgrades per second on average, AcceptBurst at once. Past it a
// client gets HTTP 503 with a Retry-After of 1 to 3 seconds, drawn at random
// so that a herd that was turned away does not come back as one. It keeps a
// reconnect storm (a deploy, a pod lost) from starving the connections the
// pod already serves of CPU. All methods may be called concurrently.
type admission struct {
	rate, burst float64 // rate <= 0: no limit

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newAdmission(cfg *HandlerConfig) *admission {
	return &admission{rate: cfg.AcceptRate, burst: float64(cfg.AcceptBurst), tokens: float64(cfg.AcceptBurst)}
}

// allow takes a token if there is one.
func (a *admission) allow(now time.Time) bool {
	if a.rate <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.last.IsZero() {
		a.tokens = min(a.burst, a.tokens+a.rate*now.Sub(a.last).Seconds())
	}
	a.last = now
	if a.tokens < 1 {
		return false
	}
	a.tokens--
	return true
}

// retryAfter is the Retry-After value (seconds) for a client turned away.
func retryAfter() string { return strconv.Itoa(1 + rand.IntN(3)) }
