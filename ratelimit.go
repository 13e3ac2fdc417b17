package realtime

import "time"

// rateLimiter is a token bucket of client messages: rate per second, up to
// burst at once. It is used by one reader at a time.
type rateLimiter struct {
	last    int64   // unix nanoseconds of the last refill; 0 before the first
	tokens  float32 // float32: a fraction of a message is all the precision needed
	strikes int32   // messages refused in a row
}

// allow reports whether one more message may pass now.
func (l *rateLimiter) allow(rate float64, burst int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	t := now.UnixNano()
	if l.last == 0 {
		l.tokens = float32(burst)
	} else {
		l.tokens = float32(min(float64(burst), float64(l.tokens)+rate*float64(t-l.last)/1e9))
	}
	l.last = t
	if l.tokens >= 1 {
		l.tokens--
		l.strikes = 0
		return true
	}
	l.strikes++
	return false
}
