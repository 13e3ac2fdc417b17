package realtime

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// admission is the token bucket every upgrade passes, on both doors: at most
// AcceptRate upgrades per second on average, AcceptBurst at once. Past it a
// client gets HTTP 503 with a Retry-After of 1 to 3 seconds, drawn at random
// so that a herd that was turned away does not come back as one. It keeps a
// reconnect storm (a deploy, a pod lost) from starving the connections the
// pod already serves of CPU. Browsers get a 1013 close instead (see
// tryLaterFrame). All methods may be called concurrently.
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

// tryLaterFrame is the close frame a browser turned away gets: 1013 (Try
// Again Later) with "reconnect_ms=NNN", 1 to 3 s, which realtime.js honours.
// A browser sees a refused upgrade as a bare 1006, so a 503's Retry-After
// would be lost on it: a request with an Origin header (a browser's) is
// upgraded only to be closed this way at once.
func tryLaterFrame() []byte {
	reason := "try again later; reconnect_ms=" + strconv.Itoa(1000+rand.IntN(2000))
	return wsframe.AppendFrame(nil, wsframe.OpClose, wsframe.ClosePayload(wsframe.CloseTryAgainLater, reason))
}

// sendTryLater writes the 1013 close frame to a just-upgraded connection and
// closes it.
func sendTryLater(nc net.Conn) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write(tryLaterFrame())
	nc.Close()
}
