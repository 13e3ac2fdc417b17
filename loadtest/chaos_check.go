package main

import (
	"fmt"
	"time"
)

// This file is the heart of -chaos: what one client received of its room,
// judged against the protocol's promise. Within one epoch a client sees
// every offset after the position of its first acknowledgement exactly
// once, in increasing order, with no gaps; an acknowledgement with
// recovered:false is the server owning up to what it cannot replay. The
// checker is pure (no clock, no I/O): times are handed to it.

// Kinds of anomaly. The first six are failures; recovered:false is a
// reported, permitted gap.
const (
	anDup        = "duplicated"        // an offset received twice in one epoch
	anOOO        = "out_of_order"      // an offset below one already received or positioned at, not seen before
	anStale      = "stale"             // an offset at or below the position the client entered the epoch at
	anEpoch      = "unannounced_epoch" // a message of another epoch with no recovered:false before it
	anMismatch   = "mismatch"          // one (room, epoch, offset) carrying two different messages
	anBadAck     = "bad_ack"           // an acknowledgement that breaks the protocol (recovered missing, or true with another epoch)
	anRecFalse   = "recovered_false"   // the server said it could not replay: reported, not lost
	anBeforeAck  = "before_ack"        // a message before the connection's first acknowledgement (no position to judge it by)
	anWildOffset = "wild_offset"       // an offset more than maxJump past the highest one: not tracked
	anNoPosition = "no_position"       // an acknowledgement with an empty epoch: the position is unknown until the next message
)

// maxJump bounds how far one offset may run past the highest seen before
// the checker refuses to track it (a bitmap of that size).
const maxJump = 1 << 20

// anomaly is one thing the checker noticed, with when.
type anomaly struct {
	Kind   string    `json:"kind"`
	Epoch  string    `json:"epoch"`
	Offset uint64    `json:"offset"`
	At     time.Time `json:"-"`
	Detail string    `json:"detail,omitempty"`
	Conn   string    `json:"connection_id,omitempty"` // the connection it happened on
}

// joinAck is a join acknowledgement as the checker needs it.
type joinAck struct {
	Offset    uint64
	Epoch     string
	Recovered *bool // present only when the join sent since
}

// gapNote records offsets [from, to] missing when a later one arrived at At.
type gapNote struct {
	from, to uint64
	at       time.Time
}

// ledger is what one client received of its room in one epoch, from its
// position when it entered the epoch (base) on.
type ledger struct {
	epoch   string
	base    uint64      // offsets <= base were before the client's time
	high    uint64      // highest offset received or positioned at
	got     []uint64    // bitmap: bit o-base-1 set when offset o arrived
	skipped [][2]uint64 // (from, to] ranges the server reported unreplayable (recovered:false, same epoch)
	gaps    []gapNote
}

func newLedger(epoch string, pos uint64) *ledger {
	return &ledger{epoch: epoch, base: pos, high: pos}
}

// has reports whether offset o (> base) arrived.
func (l *ledger) has(o uint64) bool {
	i := o - l.base - 1
	return int(i/64) < len(l.got) && l.got[i/64]&(1<<(i%64)) != 0
}

// mark records offset o (> base) as arrived.
func (l *ledger) mark(o uint64) {
	i := o - l.base - 1
	for int(i/64) >= len(l.got) {
		l.got = append(l.got, 0)
	}
	l.got[i/64] |= 1 << (i % 64)
}

// isSkipped reports whether o lies in a range the server reported lost.
func (l *ledger) isSkipped(o uint64) bool {
	for _, r := range l.skipped {
		if o > r[0] && o <= r[1] {
			return true
		}
	}
	return false
}

// checker judges one client's stream of one room.
type checker struct {
	ledgers   []*ledger // oldest first; the last is the current one
	anomalies []anomaly
	delivered int64  // chat messages taken (not counting duplicates, stale or untracked ones)
	conn      string // the current connection's ID, for the record
	pending   bool   // the last acknowledgement gave no position (empty epoch): the next message sets it
}

// cur is the current ledger, or nil before the first acknowledgement.
func (c *checker) cur() *ledger {
	if len(c.ledgers) == 0 {
		return nil
	}
	return c.ledgers[len(c.ledgers)-1]
}

// position is what the client sends as since when it rejoins.
func (c *checker) position() (offset uint64, epoch string, ok bool) {
	l := c.cur()
	if l == nil {
		return 0, "", false
	}
	return l.high, l.epoch, true
}

func (c *checker) note(kind, epoch string, offset uint64, at time.Time, detail string) {
	c.anomalies = append(c.anomalies, anomaly{Kind: kind, Epoch: epoch, Offset: offset, At: at, Detail: detail, Conn: c.conn})
}

// ack takes a join acknowledgement; sentSince says whether the join carried
// a position. An acknowledgement with an empty epoch gives no position: it
// is noted (no_position), and the next message sets the position; with
// since it is a recovered:false like any other (or a bad_ack without
// recovered).
func (c *checker) ack(a joinAck, sentSince bool, at time.Time) {
	l := c.cur()
	c.pending = false
	if a.Epoch == "" {
		c.note(anNoPosition, a.Epoch, a.Offset, at, "")
	}
	switch {
	case !sentSince || l == nil:
		if a.Epoch == "" {
			c.pending = true
			return
		}
		c.ledgers = append(c.ledgers, newLedger(a.Epoch, a.Offset))
	case a.Recovered == nil:
		c.note(anBadAck, a.Epoch, a.Offset, at, "join with since acknowledged without recovered")
		c.reset(l, a)
	case *a.Recovered && a.Epoch != l.epoch:
		c.note(anBadAck, a.Epoch, a.Offset, at, fmt.Sprintf("recovered:true from epoch %s into %s", l.epoch, a.Epoch))
		c.ledgers = append(c.ledgers, newLedger(a.Epoch, l.high))
	case *a.Recovered:
		// Everything after our position follows: nothing moves.
	default:
		c.note(anRecFalse, a.Epoch, a.Offset, at, fmt.Sprintf("since %d@%s", l.high, l.epoch))
		c.reset(l, a)
	}
}

// reset moves the position to the acknowledgement's after recovered:false:
// within the same epoch the offsets skipped are the server's reported loss,
// not ours to count; another epoch starts a new ledger.
func (c *checker) reset(l *ledger, a joinAck) {
	if a.Epoch == "" {
		c.pending = true
		return
	}
	if a.Epoch != l.epoch {
		c.ledgers = append(c.ledgers, newLedger(a.Epoch, a.Offset))
		return
	}
	if a.Offset > l.high {
		l.skipped = append(l.skipped, [2]uint64{l.high, a.Offset})
		l.high = a.Offset
	}
}

// message takes a chat message of the room with its offset and epoch, and
// reports whether it was taken (not a duplicate, stale or untracked).
func (c *checker) message(epoch string, o uint64, at time.Time) bool {
	if c.pending {
		c.settle(epoch, o)
	}
	l := c.cur()
	if l == nil {
		c.note(anBeforeAck, epoch, o, at, "")
		return false
	}
	if epoch != l.epoch {
		c.note(anEpoch, epoch, o, at, "previous epoch "+l.epoch)
		l = newLedger(epoch, o-min(o, 1))
		c.ledgers = append(c.ledgers, l)
	}
	switch {
	case o <= l.base:
		c.note(anStale, epoch, o, at, fmt.Sprintf("position was %d", l.base))
		return false
	case o > l.high && o-l.high > maxJump:
		c.note(anWildOffset, epoch, o, at, fmt.Sprintf("highest was %d", l.high))
		return false
	case l.has(o):
		c.note(anDup, epoch, o, at, "")
		return false
	case o <= l.high:
		c.note(anOOO, epoch, o, at, fmt.Sprintf("highest was %d", l.high))
	case o > l.high+1:
		l.gaps = append(l.gaps, gapNote{l.high + 1, o - 1, at})
		l.high = o
	default:
		l.high = o
	}
	l.mark(o)
	c.delivered++
	return true
}

// settle sets the position a positionless acknowledgement left unknown
// from the first message after it, o of epoch: the current ledger goes on
// if it is of that epoch (what lies between is the reported gap; an offset
// at or below its highest is judged as usual), else a ledger starts just
// before o.
func (c *checker) settle(epoch string, o uint64) {
	c.pending = false
	if l := c.cur(); l != nil && l.epoch == epoch {
		if o > l.high+1 {
			l.skipped = append(l.skipped, [2]uint64{l.high, o - 1})
			l.high = o - 1
		}
		return
	}
	c.ledgers = append(c.ledgers, newLedger(epoch, o-min(o, 1)))
}

// lostRange is offsets [From, To] of one epoch the client never received;
// At is when the gap was noticed (zero: only at the end).
type lostRange struct {
	Epoch    string
	From, To uint64
	At       time.Time
}

// roomEnd is a room's final position, read after the run went quiet.
type roomEnd struct {
	Offset uint64
	Epoch  string
	Known  bool
}

// finish returns what the client lost, given the room's final position.
// The last ledger runs to the room's final offset when it is of the final
// epoch; a last ledger of another epoch means the epoch changed without a
// recovered:false, which is recorded (at time at) as unannounced_epoch.
// Earlier ledgers run to their highest offset.
func (c *checker) finish(end roomEnd, at time.Time) []lostRange {
	var lost []lostRange
	for i, l := range c.ledgers {
		last := l.high
		if i == len(c.ledgers)-1 && end.Known {
			if end.Epoch == l.epoch {
				last = max(last, end.Offset)
			} else {
				c.note(anEpoch, end.Epoch, end.Offset, at, "the room's epoch at the end; the client's is "+l.epoch)
			}
		}
		lost = append(lost, l.missing(last)...)
	}
	return lost
}

// missing returns the offsets in (base, last] neither received nor
// reported skipped, as ranges, each with when its gap was noticed.
func (l *ledger) missing(last uint64) []lostRange {
	var out []lostRange
	for o := l.base + 1; o <= last; o++ {
		if l.has(o) || l.isSkipped(o) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].To == o-1 {
			out[n-1].To = o
			continue
		}
		out = append(out, lostRange{Epoch: l.epoch, From: o, To: o, At: l.gapTime(o)})
	}
	return out
}

// gapTime is when offset o was noticed missing, or zero.
func (l *ledger) gapTime(o uint64) time.Time {
	for _, g := range l.gaps {
		if o >= g.from && o <= g.to {
			return g.at
		}
	}
	return time.Time{}
}

// endText is the client's position, for a trace's heading.
func (c *checker) endText() string {
	off, epoch, ok := c.position()
	if !ok {
		return "no position"
	}
	return fmt.Sprintf("%d@%s", off, epoch)
}
