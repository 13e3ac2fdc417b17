package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// The load generator's connections go through wsClient, so that the client
// doing the work can be chosen (-client): the lean one (wsclient_lean.go),
// which spends a fraction of gorilla's CPU per connect, or gorilla's, as
// every figure was measured before the lean one. Profiles of gorilla's
// client showed 117-205 µs of generator CPU per connect, as much as the
// servers used: on a 2-core machine it capped every server's connect rate
// and compressed the ratios between them. The chaos mode, the warm-up
// connection and the probes keep gorilla's client.

// wsClient is one WebSocket connection of the load generator. ReadMessage
// and SetReadDeadline are for one goroutine at a time; WriteText and Close
// may be called concurrently with them and with each other.
type wsClient interface {
	// WriteText sends p as one text message.
	WriteText(p []byte) error
	// ReadMessage returns the next text or binary message's payload,
	// valid until the next call; answering pings meanwhile. A close from
	// the server ends it with a *closeError.
	ReadMessage() ([]byte, error)
	SetReadDeadline(t time.Time) error
	// Close closes the socket without a close frame (a dropped
	// connection, as -storm wants it).
	Close() error
}

// The clients -client names.
const (
	clientLean    = "lean"
	clientGorilla = "gorilla"
)

// wsClientKind is -client: which client dialWS uses.
var wsClientKind = clientLean

// dialWS dials connection i to rawURL with the client -client chose, from
// the source address dialer(i, rawURL) would use. A server that answers the
// upgrade with another status than 101 gives a *dialRefusal.
func dialWS(ctx context.Context, i int, rawURL string) (wsClient, error) {
	if wsClientKind == clientGorilla {
		return dialGorilla(ctx, i, rawURL)
	}
	c, err := dialLean(ctx, i, rawURL)
	if err != nil {
		return nil, err // not a nil *leanConn in an interface
	}
	return c, nil
}

// dialRefusal is an upgrade the server answered with another status than
// 101 Switching Protocols; a 503 (admission control) says when to come back
// in RetryAfter.
type dialRefusal struct {
	Status     int
	RetryAfter string // the Retry-After header's value, "" when absent
}

func (r *dialRefusal) Error() string {
	s := fmt.Sprintf("upgrade refused: %d %s", r.Status, http.StatusText(r.Status))
	if r.RetryAfter != "" {
		s += ", Retry-After " + r.RetryAfter
	}
	return s
}

// serviceUnavailable reports whether err is an upgrade answered 503, and how
// long its Retry-After asks to wait (0 when absent or not a number of
// seconds).
func serviceUnavailable(err error) (time.Duration, bool) {
	var r *dialRefusal
	if !errors.As(err, &r) || r.Status != http.StatusServiceUnavailable {
		return 0, false
	}
	secs, _ := strconv.Atoi(r.RetryAfter)
	return time.Duration(secs) * time.Second, true
}

// closeError is a close frame the server sent (RFC 6455 section 5.5.1);
// Code is 1005 when it carried none.
type closeError struct {
	Code   int
	Reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("websocket: close %d %s", e.Code, e.Reason)
}

// readJSON decodes the next message of c into v.
func readJSON(c wsClient, v any) error {
	b, err := c.ReadMessage()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// gorillaClient is gorilla/websocket's client behind wsClient: what the load
// generator used before the lean client, kept for comparison (-client
// gorilla). It allocates each message it reads.
type gorillaClient struct{ c *websocket.Conn }

// dialGorilla dials with dialer(i, rawURL).
func dialGorilla(ctx context.Context, i int, rawURL string) (wsClient, error) {
	c, resp, err := dialer(i, rawURL).DialContext(ctx, rawURL, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &dialRefusal{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
		}
		return nil, err
	}
	// gorilla's default ping handler gives the pong 1 s and ends the read
	// loop when that passes, which a load generator on a busy machine can
	// miss; be patient, and never let a late pong end the reader.
	c.SetPingHandler(func(s string) error {
		c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(30*time.Second))
		return nil
	})
	return gorillaClient{c}, nil
}

func (g gorillaClient) WriteText(p []byte) error { return g.c.WriteMessage(websocket.TextMessage, p) }

func (g gorillaClient) ReadMessage() ([]byte, error) {
	_, b, err := g.c.ReadMessage()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return nil, &closeError{Code: ce.Code, Reason: ce.Text}
	}
	return b, err
}

func (g gorillaClient) SetReadDeadline(t time.Time) error { return g.c.SetReadDeadline(t) }

func (g gorillaClient) Close() error { return g.c.Close() }
