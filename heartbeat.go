package realtime

import (
	"sync"

	"github.com/realtimehub/realtime/internal/wsframe"
	"sync/atomic"
	"time"
)

// wheelBuckets is how many buckets the heartbeat wheel has: every tick
// (PingInterval / wheelBuckets) one bucket is swept, so each connection is
// visited once per PingInterval, by one goroutine for all connections.
const wheelBuckets = 16

// heartbeat pings idle connections, closes silent ones, and tears down
// connections whose close handshake outlived its deadline. It holds every
// live connection of a handler, which is also how shutdown finds them.
type heartbeat struct {
	buckets [wheelBuckets]hbBucket
	next    atomic.Uint32

	closingMu sync.Mutex
	closingQ  []closingConn
}

type hbBucket struct {
	mu    sync.Mutex
	conns []*conn
	_     [40]byte // keep buckets' locks on separate cache lines
}

type closingConn struct {
	c        *conn
	deadline int64
}

func (hb *heartbeat) add(c *conn) {
	i := hb.next.Add(1) % wheelBuckets
	b := &hb.buckets[i]
	b.mu.Lock()
	c.hbBucket, c.hbPos = int32(i), int32(len(b.conns))
	b.conns = append(b.conns, c)
	b.mu.Unlock()
}

func (hb *heartbeat) remove(c *conn) {
	b := &hb.buckets[c.hbBucket]
	b.mu.Lock()
	defer b.mu.Unlock()
	i := int(c.hbPos)
	if i < 0 || i >= len(b.conns) || b.conns[i] != c {
		return
	}
	last := len(b.conns) - 1
	b.conns[i] = b.conns[last]
	b.conns[i].hbPos = int32(i)
	b.conns[last] = nil
	b.conns = b.conns[:last]
	c.hbPos = -1
}

// snapshot appends bucket i's connections to dst.
func (hb *heartbeat) snapshot(i int, dst []*conn) []*conn {
	b := &hb.buckets[i]
	b.mu.Lock()
	dst = append(dst, b.conns...)
	b.mu.Unlock()
	return dst
}

// all returns every live connection.
func (hb *heartbeat) all() []*conn {
	var out []*conn
	for i := range hb.buckets {
		out = hb.snapshot(i, out)
	}
	return out
}

// closing records that c must be torn down by deadline if the close
// handshake has not finished by then.
func (hb *heartbeat) closing(c *conn, deadline time.Time) {
	hb.closingMu.Lock()
	hb.closingQ = append(hb.closingQ, closingConn{c, deadline.UnixNano()})
	hb.closingMu.Unlock()
}

// sweep visits bucket i: pings connections and closes silent ones.
// scratch is reused.
func (hb *heartbeat) sweep(i int, now time.Time, cfg *HandlerConfig, scratch []*conn) []*conn {
	conns := hb.snapshot(i, scratch[:0])
	silentSince := now.Add(-cfg.PongTimeout).UnixNano()
	for _, c := range conns {
		if c.state.Load() != stateOpen {
			continue
		}
		if c.lastRead.Load() < silentSince {
			c.h.stats.timeouts.Add(1)
			c.fail(wsframe.CloseGoingAway, "ping timeout")
			continue
		}
		c.enqueue(pingFrame)
	}
	clear(conns)
	return conns
}

// expire tears down closing connections past their deadline.
func (hb *heartbeat) expire(now time.Time) {
	nowNano := now.UnixNano()
	hb.closingMu.Lock()
	keep := hb.closingQ[:0]
	var expired []*conn
	for _, cc := range hb.closingQ {
		switch {
		case cc.c.state.Load() == stateClosed:
		case cc.deadline <= nowNano:
			expired = append(expired, cc.c)
		default:
			keep = append(keep, cc)
		}
	}
	clear(hb.closingQ[len(keep):])
	hb.closingQ = keep
	hb.closingMu.Unlock()
	for _, c := range expired {
		c.requestTeardown()
	}
}

// closingTick is how often closing connections are checked against their
// deadline; the list holds only connections that are closing.
const closingTick = 100 * time.Millisecond

// run sweeps one bucket per tick, and expires closing connections, until
// stop is closed.
func (hb *heartbeat) run(cfg *HandlerConfig, stop <-chan struct{}) {
	t := time.NewTicker(max(cfg.PingInterval/wheelBuckets, 10*time.Millisecond))
	defer t.Stop()
	ct := time.NewTicker(closingTick)
	defer ct.Stop()
	var scratch []*conn
	i := 0
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			scratch = hb.sweep(i, now, cfg, scratch)
			i = (i + 1) % wheelBuckets
		case now := <-ct.C:
			hb.expire(now)
		}
	}
}
