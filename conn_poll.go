package realtime

import (
	"github.com/realtimehub/realtime/netpoll"
)

// Interest armed in epoll, as stored in conn.armed.
const (
	armRead  uint32 = 1
	armWrite uint32 = 2
)

// onPoll is the epoll callback: it runs on a dispatch goroutine, so it only
// records the event and schedules the connection's task.
func (c *conn) onPoll(ev netpoll.Event) {
	c.armed.Store(0) // one-shot: nothing is armed until the task re-arms
	var w uint32
	if ev&(netpoll.Readable|netpoll.Hangup) != 0 {
		w |= workRead
	}
	if ev&netpoll.Writable != 0 {
		w |= workWrite
	}
	if ev&netpoll.Closed != 0 {
		w |= workTeardown
	}
	c.pend.Or(w)
	c.schedule()
}

// Run is the polled connection's task: read what is there, write what is
// queued, re-arm epoll. It never blocks: a half-sent frame stays in the
// reader's buffer and a full socket waits for EPOLLOUT.
func (c *conn) Run(s *netpoll.Scratch) {
	for {
		work := c.pend.Swap(0)
		if c.state.Load() == stateClosed {
			return
		}
		if work&workTeardown != 0 {
			c.teardown(nil)
			return
		}
		if work&workRead != 0 {
			c.scratch = s
			err := c.readPolled(s.Read)
			c.scratch = nil
			if err != nil {
				c.teardown(err)
				return
			}
			if c.pend.And(^workTeardown)&workTeardown != 0 { // requested while reading
				c.teardown(nil)
				return
			}
		}
		if work&(workFlush|workWrite) != 0 {
			blocked, err := c.flush(s.IOV)
			if err != nil {
				c.teardown(err)
				return
			}
			c.writeBlocked = blocked
		}
		if c.closeDone() {
			c.teardown(nil)
			return
		}
		want := armRead
		if c.writeBlocked {
			want |= armWrite
		}
		if c.armed.Load() != want {
			c.armed.Store(want)
			if err := c.h.eng.poller.Arm(int(c.fd), c.writeBlocked); err != nil {
				c.teardown(err)
				return
			}
		}
		c.scheduled.Store(false)
		if c.pend.Load() == 0 || !c.scheduled.CompareAndSwap(false, true) {
			return
		}
	}
}

// readsPerTurn bounds how much one task reads before letting other
// connections have the worker (32 KiB × 4).
const readsPerTurn = 4

func (c *conn) readPolled(buf []byte) error {
	for range readsPerTurn {
		n, err := netpoll.Read(int(c.fd), buf)
		if err == netpoll.ErrWouldBlock {
			return nil
		}
		if err != nil {
			return err
		}
		c.onBytes(buf[:n])
		if n < len(buf) {
			return nil
		}
	}
	c.pend.Or(workRead) // more may be waiting: continue after others had a turn
	return nil
}
