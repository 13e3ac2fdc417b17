package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// chaosClient is one connection of -chaos, in one room, that comes back
// the way realtime.js does whenever it is dropped, and rejoins with since.
type chaosClient struct {
	idx  int // for the source address
	user string
	room string
	url  string // ws://…/ws?user=…
	book *roomBook
	pub  *publisher // set for a room's publisher

	wmu    sync.Mutex // one writer at a time: the join, the publisher
	conn   atomic.Pointer[websocket.Conn]
	joined atomic.Bool // the current connection's join is acknowledged

	mu           sync.Mutex // guards what follows (the client's goroutine writes it)
	ck           checker
	bo           *backoff
	sessions     int             // connections that got through the upgrade
	acks         int             // join acknowledgements with an offset
	legacyAcks   int             // own join events without an offset (a server without positions)
	extraAcks    int             // own acknowledgements past the first on one connection
	noOffset     int64           // chat messages without an offset
	badFrames    int64           // frames that are not JSON
	errCodes     map[string]int  // error messages by code
	downSince    time.Time       // when the last connection was seen to end, until the next acknowledgement
	downtimes    []time.Duration // from a drop to the next acknowledgement
	drops        []dropRec       // each connection seen to end
	sentSince    bool            // the current connection's join carried since
	sessionAcked bool            // the current connection's join was acknowledged with an offset
	tr           trace
}

// dropRec is a connection seen to end: when, and on which pod (the
// connection ID's prefix).
type dropRec struct {
	at  time.Time
	pod string
}

// maxSessions bounds a client's reconnections (the run's context bounds
// their time).
const maxSessions = 100000

// readIdle ends a connection that heard nothing, not even a ping (the
// server pings every 25 s), for this long.
const readIdle = 60 * time.Second

func newChaosClient(idx int, user, room, base string, book *roomBook) *chaosClient {
	return &chaosClient{idx: idx, user: user, room: room, url: base + "?user=" + user, book: book,
		bo: newBackoff(), errCodes: map[string]int{}}
}

// loop connects, joins and reads until ctx ends, coming back after every
// drop. The first dial waits for a place in ramp, so that the clients do not
// all dial at once.
func (cl *chaosClient) loop(ctx context.Context, ramp chan struct{}) {
	select {
	case ramp <- struct{}{}:
	case <-ctx.Done():
		return
	}
	for s := 0; s < maxSessions && ctx.Err() == nil; s++ {
		c, resp, err := dialer(cl.idx, cl.url).DialContext(ctx, cl.url, nil)
		if s == 0 {
			<-ramp
		}
		if err == nil {
			err = cl.session(c)
		}
		if ctx.Err() != nil {
			return
		}
		cl.mu.Lock()
		delay := cl.bo.delayAfter(err, resp)
		cl.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
	}
}

// session joins the room on c (with since when the client has a position)
// and reads until the connection ends, which it returns.
func (cl *chaosClient) session(c *websocket.Conn) error {
	c.SetPingHandler(func(s string) error {
		c.SetReadDeadline(time.Now().Add(readIdle))
		c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(10*time.Second))
		return nil
	})
	cl.mu.Lock()
	cl.sessions++
	off, epoch, ok := cl.ck.position()
	cl.sentSince, cl.sessionAcked = ok, false
	cl.ck.conn = ""
	if ok {
		cl.tr.event(time.Now(), "upgraded; join since %d@%s", off, epoch)
	} else {
		cl.tr.event(time.Now(), "upgraded; join")
	}
	cl.mu.Unlock()
	cl.conn.Store(c)
	defer func() {
		cl.joined.Store(false)
		cl.conn.Store(nil)
		c.Close()
		now := time.Now()
		cl.mu.Lock()
		if cl.downSince.IsZero() {
			cl.downSince = now
		}
		pod, _, _ := strings.Cut(cl.ck.conn, ".")
		cl.drops = append(cl.drops, dropRec{now, pod})
		cl.mu.Unlock()
	}()
	cl.wmu.Lock()
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	err := c.WriteMessage(websocket.TextMessage, joinFrame(cl.room, off, epoch, ok))
	cl.wmu.Unlock()
	if err != nil {
		return err
	}
	for {
		c.SetReadDeadline(time.Now().Add(readIdle))
		_, b, err := c.ReadMessage()
		if err != nil {
			cl.mu.Lock()
			cl.tr.event(time.Now(), "closed: %v", err)
			cl.mu.Unlock()
			return err
		}
		cl.handle(b, time.Now())
	}
}

// handle takes one frame from the server.
func (cl *chaosClient) handle(b []byte, now time.Time) {
	m, d, err := parseWire(b)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	defer cl.traceAnomalies(len(cl.ck.anomalies))
	if err != nil {
		cl.badFrames++
		return
	}
	switch m.Type {
	case "system":
		if d.Event == "connected" {
			cl.ck.conn = d.ConnectionID
			cl.tr.event(now, "connected %s", d.ConnectionID)
		}
	case "join":
		if d.UserID == cl.user && m.Room == cl.room {
			cl.onAck(d, now)
		}
	case "error":
		cl.errCodes[d.Code]++
		cl.tr.event(now, "error %s", d.Code)
		if cl.pub != nil && d.Code == "publish_failed" {
			cl.pub.failure(now)
		}
		if d.Code == "unavailable" && m.Room == cl.room {
			cl.rejoinLater() // the room could not be read from Redis yet, as realtime.js does
		}
	case "chat":
		if m.Room == cl.room {
			cl.onChat(m, d, now)
		}
	}
}

// onAck takes the client's own join acknowledgement (cl.mu held). The
// first one with an offset on a connection is the acknowledgement; one
// without an offset is the join event of a server that keeps no positions,
// which counts as joined (nothing can be checked) unless an acknowledgement
// with an offset follows.
func (cl *chaosClient) onAck(d wireData, now time.Time) {
	switch {
	case d.Offset == nil && cl.joined.Load():
		return
	case d.Offset == nil:
		cl.legacyAcks++
	case cl.sessionAcked:
		cl.extraAcks++
		return
	default:
		cl.acks++
		cl.sessionAcked = true
		cl.tr.event(now, "ack %d@%s recovered=%s", *d.Offset, d.Epoch, boolText(d.Recovered))
		cl.ck.ack(joinAck{Offset: *d.Offset, Epoch: d.Epoch, Recovered: d.Recovered}, cl.sentSince, now)
	}
	if !cl.downSince.IsZero() {
		cl.downtimes = append(cl.downtimes, now.Sub(cl.downSince))
		cl.downSince = time.Time{}
	}
	cl.bo.reset()
	cl.joined.Store(true)
}

// onChat takes a chat message of the room (cl.mu held): the checker judges
// its offset, the room's book what it carried, and a publisher notes its
// own message back.
func (cl *chaosClient) onChat(m wireMsg, d wireData, now time.Time) {
	if m.Offset == nil {
		cl.noOffset++
		return
	}
	cl.tr.msg(now, m.Epoch, *m.Offset)
	taken := cl.ck.message(m.Epoch, *m.Offset, now)
	if d.Seq == nil {
		return
	}
	if prev, clash := cl.book.carried(m.Epoch, *m.Offset, *d.Seq); clash {
		cl.ck.note(anMismatch, m.Epoch, *m.Offset, now, "seq "+itoa(*d.Seq)+", another member got seq "+itoa(prev))
	}
	if cl.pub != nil && taken {
		cl.pub.echo(*d.Seq, m.Epoch, *m.Offset, cl.book)
	}
}

// traceAnomalies adds the anomalies past the first n to the trace (cl.mu
// held).
func (cl *chaosClient) traceAnomalies(n int) {
	for _, a := range cl.ck.anomalies[n:] {
		cl.tr.event(a.At, "ANOMALY %s %d@%s %s", a.Kind, a.Offset, a.Epoch, a.Detail)
	}
}

// boolText is *b as text, or "absent".
func boolText(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

// drop closes the client's connection as a network fault does: the socket
// goes, no close frame. It reports whether there was one.
func (cl *chaosClient) drop() bool {
	c := cl.conn.Load()
	if c == nil {
		return false
	}
	c.NetConn().Close()
	return true
}

// caughtUp reports whether the client is joined at the room's final
// position.
func (cl *chaosClient) caughtUp(end roomEnd) bool {
	if !cl.joined.Load() {
		return false
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	off, epoch, ok := cl.ck.position()
	return ok && epoch == end.Epoch && off >= end.Offset
}

// rejoinLater joins the room again in one to two seconds, on the same
// connection, with the client's position then (the server answered
// unavailable: the room's history could not be read yet).
func (cl *chaosClient) rejoinLater() {
	c := cl.conn.Load()
	time.AfterFunc(time.Second+time.Duration(rand.Int64N(int64(time.Second))), func() {
		if cl.conn.Load() != c || c == nil {
			return // reconnected meanwhile: that connection joined by itself
		}
		cl.mu.Lock()
		off, epoch, ok := cl.ck.position()
		cl.sentSince = ok
		cl.mu.Unlock()
		cl.wmu.Lock()
		defer cl.wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.WriteMessage(websocket.TextMessage, joinFrame(cl.room, off, epoch, ok))
	})
}
