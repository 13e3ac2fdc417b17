package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// publisher sends a room's messages, each with a seq of its own, on a
// chaosClient of the room (it is a member and is checked like any other).
// A message is accepted when it comes back to the publisher with an offset;
// publish_failed means it was not; a message written just before a drop may
// be neither (unconfirmed).
type publisher struct {
	cl       *chaosClient
	interval time.Duration

	mu       sync.Mutex
	seq      int64
	sentAt   map[int64]time.Time // seq → when it was written
	accepted map[int64]bool      // seqs that came back
	failedAt []time.Time         // when each publish_failed came

	sent    atomic.Int64
	failed  atomic.Int64 // publish_failed errors
	skipped atomic.Int64 // ticks with no joined connection to write on
	dupEcho atomic.Int64 // a seq that came back at two offsets
}

func newPublisher(cl *chaosClient, interval time.Duration) *publisher {
	p := &publisher{cl: cl, interval: interval, sentAt: map[int64]time.Time{}, accepted: map[int64]bool{}}
	cl.pub = p
	return p
}

// loop publishes one message every interval (starting at a random phase)
// until stop closes or ctx ends; a tick with no joined connection is
// skipped.
func (p *publisher) loop(ctx context.Context, stop <-chan struct{}) {
	select {
	case <-time.After(time.Duration(rand.Int64N(int64(p.interval)))):
	case <-stop:
		return
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		if !p.cl.joined.Load() || !p.send() {
			p.skipped.Add(1)
		}
	}
}

// send writes the next message and reports whether it was written.
func (p *publisher) send() bool {
	p.cl.wmu.Lock()
	defer p.cl.wmu.Unlock()
	c := p.cl.conn.Load()
	if c == nil {
		return false
	}
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.sentAt[seq] = time.Now()
	p.mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if c.WriteMessage(websocket.TextMessage, chatFrame(p.cl.room, seq)) != nil {
		p.mu.Lock()
		delete(p.sentAt, seq)
		p.mu.Unlock()
		return false
	}
	p.sent.Add(1)
	return true
}

// echo takes the publisher's own message seq back at (epoch, offset): it is
// accepted, and the room's book learns when that offset was sent.
func (p *publisher) echo(seq int64, epoch string, offset uint64, book *roomBook) {
	p.mu.Lock()
	at, ok := p.sentAt[seq]
	if p.accepted[seq] {
		p.dupEcho.Add(1)
	}
	p.accepted[seq] = true
	p.mu.Unlock()
	if ok {
		book.setSent(epoch, offset, at)
	}
}

// failure notes a publish_failed received at.
func (p *publisher) failure(at time.Time) {
	p.failed.Add(1)
	p.mu.Lock()
	p.failedAt = append(p.failedAt, at)
	p.mu.Unlock()
}

// tallyByFault counts the publisher's messages under the fault kind that
// was the latest when each was sent (publish_failed: when it came).
func (p *publisher) tallyByFault(faults []faultRec, byKind map[string]*kindTally) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for seq, at := range p.sentAt {
		k := byKind[faultAt(at, faults)]
		k.Published++
		if p.accepted[seq] {
			k.Accepted++
		}
	}
	for _, at := range p.failedAt {
		byKind[faultAt(at, faults)].PublishFailed++
	}
}

// acceptedCount is how many distinct messages came back.
func (p *publisher) acceptedCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int64(len(p.accepted))
}
