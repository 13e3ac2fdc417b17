package main

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// backoff is realtime.js's reconnect delay, scaled for a test: exponential
// with full jitter (a delay drawn from [0, min(cap, base·2^attempt))), reset
// once a join is acknowledged.
type backoff struct {
	base, cap time.Duration
	attempt   int
	rnd       func(n int64) int64 // [0, n); rand.Int64N unless a test sets it
}

func newBackoff() *backoff {
	return &backoff{base: 100 * time.Millisecond, cap: 5 * time.Second, rnd: rand.Int64N}
}

// next returns the next delay and counts the attempt.
func (b *backoff) next() time.Duration {
	ceil := b.cap
	if b.attempt < 30 && b.base<<b.attempt < b.cap {
		ceil = b.base << b.attempt
	}
	b.attempt++
	return time.Duration(b.rnd(int64(ceil)))
}

func (b *backoff) reset() { b.attempt = 0 }

// jitter is the spread added to a delay the server asked for.
const jitter = 500 * time.Millisecond

var reconnectHint = regexp.MustCompile(`reconnect_ms=(\d+)`)

// delayAfter is how long to wait before the next dial, given why the last
// connection ended or the dial failed: a 503's Retry-After, or a 1001/1013
// close with "reconnect_ms=NNN", is honoured with jitter on top (and resets
// the backoff, as realtime.js does); a 1013 without a hint waits at least a
// second; anything else takes the next backoff step.
func (b *backoff) delayAfter(err error, resp *http.Response) time.Duration {
	if resp != nil && resp.StatusCode == http.StatusServiceUnavailable {
		if secs, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil && secs >= 0 {
			b.reset()
			return time.Duration(secs)*time.Second + time.Duration(b.rnd(int64(jitter)))
		}
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && (ce.Code == websocket.CloseGoingAway || ce.Code == websocket.CloseTryAgainLater) {
		if m := reconnectHint.FindStringSubmatch(ce.Text); m != nil {
			hint, _ := strconv.Atoi(m[1])
			b.reset()
			return time.Duration(hint)*time.Millisecond + time.Duration(b.rnd(int64(jitter)))
		}
		if ce.Code == websocket.CloseTryAgainLater {
			return max(time.Second, b.next())
		}
	}
	return b.next()
}
