package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/realtimehub/realtime/broadcast"
	"github.com/realtimehub/realtime/history"
)

// redisHistory is a RedisBroadcaster's room history. Redis is the authority:
// a script appends each message to its room's stream, which gives it its
// offset, and publishes it, atomically (broadcast.Bus.Append). Each pod
// keeps a follower log of the rooms it serves (has members in): every
// message of such a room, whether it comes back from the append or through
// pub/sub, goes through the log, which delivers it once and in offset order
// and holds back what follows a gap. A gap, a subscription (re-)confirmed by
// Redis, a payload dropped by a full queue, and a room newly served each
// queue the room for a sync, which reads the room's position and the
// messages after the pod's from Redis and delivers what was missed. A join
// the log cannot answer from memory reads Redis the same way (joinLater).
//
// All methods may be called concurrently.
type redisHistory struct {
	b    *RedisBroadcaster
	opts broadcast.HistoryOptions
	log  *history.Log[*Frame]

	mu      sync.Mutex
	refs    map[string]int           // rooms served: the hub's member rooms, and joins in progress
	queued  map[string]struct{}      // rooms waiting for a read
	order   []string                 // queued, in the order they were asked for
	syncing map[string]struct{}      // rooms a worker is reading
	joining map[string][]pendingJoin // joins waiting for a room's read, by room
	wake    chan struct{}            // a room was queued

	// afterJoinRead, when a test sets it, runs (once) after a join's read
	// of Redis, before the join is admitted, to widen that window on
	// purpose. Atomic: a join of another room may be reading it meanwhile.
	afterJoinRead atomic.Pointer[func()]

	syncs, syncErrors, duplicates, regressions atomic.Uint64
}

// pendingJoin is a join waiting for its room to be read from Redis.
type pendingJoin struct {
	since *Position
	fn    func(historyView)
	fail  func()
}

// A join that needs Redis (a room new to the pod, or a position older than
// the pod keeps) waits for it while it is away, up to joinWait, trying again
// every joinRetry or so; then it is told to join again. It is never admitted
// with recovered:false for want of Redis: that answer means history was lost.
const (
	joinReadTimeout = time.Second
	joinWait        = 10 * time.Second
	joinRetry       = 250 * time.Millisecond
)

// syncWorkers is how many rooms a pod reads from Redis at once.
const syncWorkers = 8

func newRedisHistory(b *RedisBroadcaster, o history.Options) *redisHistory {
	x := &redisHistory{
		b:    b,
		opts: broadcast.HistoryOptions{Size: o.Size, TTL: o.TTL, MetaTTL: o.MetaTTL},
		refs: map[string]int{}, queued: map[string]struct{}{}, syncing: map[string]struct{}{}, joining: map[string][]pendingJoin{},
		wake: make(chan struct{}, 1),
	}
	x.log = history.NewFollower(o, b.deliverRoom)
	x.opts = broadcast.HistoryOptions{Size: x.log.Options().Size, TTL: x.log.Options().TTL, MetaTTL: x.log.Options().MetaTTL}.Prepared()
	x.log.OnHole = x.hole
	return x
}

func (x *redisHistory) join(room string, since *Position, fn func(historyView)) bool {
	return x.log.Join(room, since, fn)
}

// joinLater serves room while it reads the room from Redis (so that the pod
// subscribes first), then admits every join that waited for it.
func (x *redisHistory) joinLater(room string, since *Position, fn func(historyView), fail func()) {
	x.ref(room, +1)
	x.mu.Lock()
	list, busy := x.joining[room]
	x.joining[room] = append(list, pendingJoin{since, fn, fail})
	x.mu.Unlock()
	if !busy {
		go x.runJoins(room)
	}
}

// runJoins admits the joins waiting for room, batch after batch.
func (x *redisHistory) runJoins(room string) {
	for {
		x.mu.Lock()
		batch := x.joining[room]
		if len(batch) == 0 {
			delete(x.joining, room)
			x.mu.Unlock()
			return
		}
		x.joining[room] = batch[:0:0]
		x.mu.Unlock()
		x.admit(room, batch)
		x.ref(room, -len(batch))
	}
}

// admit answers batch from memory where it can, else from one read of Redis.
func (x *redisHistory) admit(room string, batch []pendingJoin) {
	var rest []pendingJoin
	for _, j := range batch {
		if !x.log.Join(room, j.since, j.fn) {
			rest = append(rest, j)
		}
	}
	for attempt := 0; len(rest) > 0; attempt++ {
		before, known, _ := x.log.Position(room)
		after := uint64(0)
		if known {
			after = before.Offset
			for _, j := range rest {
				if j.since != nil && j.since.Epoch == before.Epoch {
					after = min(after, j.since.Offset)
				}
			}
		}
		cur, entries, err := x.fetchWaiting(room, after)
		if err == nil && after > 0 && cur.Epoch != before.Epoch {
			cur, entries, err = x.fetchWaiting(room, 0) // a new epoch: all of it is new
		}
		if hook := x.afterJoinRead.Swap(nil); hook != nil {
			(*hook)()
		}
		if err != nil || attempt == 3 {
			x.b.logger.Warn("realtime: join: room history unreadable", "room", room, "err", err)
			for _, j := range rest {
				j.fail()
			}
			return
		}
		var again []pendingJoin
		for _, j := range rest {
			if res := x.log.Sync(room, before, cur, entries, j.since, j.fn); res.Stale {
				again = append(again, j) // the room moved on while it was read: read again
			} else {
				x.after(room, before, res)
			}
		}
		rest = again
	}
}

// fetchWaiting is fetch for a join: while Redis is away it tries again
// until joinWait has passed.
func (x *redisHistory) fetchWaiting(room string, after uint64) (Position, []history.Entry[*Frame], error) {
	deadline := time.Now().Add(joinWait)
	for {
		err := x.b.bus.Ready()
		if err == nil {
			var cur Position
			var entries []history.Entry[*Frame]
			if cur, entries, err = x.fetch(room, after, joinReadTimeout); err == nil {
				return cur, entries, nil
			}
		}
		if time.Now().Add(joinRetry).After(deadline) {
			return Position{}, nil, err
		}
		time.Sleep(joinRetry)
	}
}

// ref counts a reason to serve room (a hub member room, or a join being
// read); the first subscribes to its partition and queues a sync, the last
// unsubscribes.
func (x *redisHistory) ref(room string, delta int) {
	x.mu.Lock()
	n := x.refs[room]
	x.refs[room] = n + delta
	switch {
	case n == 0 && delta > 0:
		x.b.bus.Watch(room)
		if x.log.Serve(room, true) {
			x.queueLocked(room)
		}
	case n > 0 && n+delta <= 0:
		delete(x.refs, room)
		x.b.bus.Unwatch(room)
		x.log.Serve(room, false)
	}
	x.mu.Unlock()
}

// accept hands the log a message with its place in room's history. A gap
// it opens is read from Redis if it is still open a moment later (the
// missing message is usually on its way by the other path: an append's
// reply and the pub/sub copy race).
func (x *redisHistory) accept(room string, pos Position, f *Frame) {
	if x.log.Accept(room, pos, f, len(f.wire)) {
		time.AfterFunc(gapWait, func() {
			if _, _, behind := x.log.Position(room); behind {
				x.scheduleSync(room)
			}
		})
	}
}

// gapWait is how long a gap may close by itself before it is repaired.
const gapWait = 20 * time.Millisecond

// validObject reports whether b is a JSON object with members, as a
// Message encodes (the history splices members in front of the first).
func validObject(b []byte) bool { return len(b) > 2 && b[0] == '{' && b[1] == '"' && json.Valid(b) }

// serves reports whether the pod serves room: it has members in it, or a
// join of it is in progress.
func (x *redisHistory) serves(room string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.refs[room] > 0
}

// receive takes an envelope's positioned payloads for room, if the pod
// serves it (has members in it, or a join of it is in progress: a message
// skipped then would wait for the next one to be noticed missing).
func (x *redisHistory) receive(room string, data []byte) {
	if !x.serves(room) {
		x.b.skipped.Add(1)
		return
	}
	if !eachPositioned(data, func(pos Position, payload []byte) { x.receiveOne(room, pos, payload) }) {
		x.b.decodeErrors.Add(1)
	}
}

// eachPositioned calls fn for each payload of an envelope's positioned part:
// "<offset> <epoch>\n" then the JSON, or "<first> <epoch> <n>\n" then n ×
// "<length>\n<JSON>" (broadcast.Bus.Append). It reports false, having
// called fn for none, if the part is malformed: an offset of 0 or one that
// would overflow, an epoch that is not ours (hex), a count over
// broadcast.MaxAppendBatch, a length that does not fit, a payload that does
// not start a JSON object with members. (fn checks that a payload it
// delivers is valid JSON: most are copies of ones delivered already.)
func eachPositioned(rest []byte, fn func(Position, []byte)) bool {
	line, body, ok := bytes.Cut(rest, []byte{'\n'})
	var f [4][]byte // "<offset> <epoch>" or "<first> <epoch> <n>"
	nf := 0
	for field := range bytes.FieldsSeq(line) {
		if nf == len(f) {
			return false
		}
		f[nf], nf = field, nf+1
	}
	fields := f[:nf]
	if !ok || len(fields) < 2 || len(fields) > 3 || !validEpoch(fields[1]) {
		return false
	}
	off, err := strconv.ParseUint(string(fields[0]), 10, 64)
	n := uint64(1)
	if err == nil && len(fields) == 3 {
		n, err = strconv.ParseUint(string(fields[2]), 10, 64)
	}
	if err != nil || off == 0 || n == 0 || n > broadcast.MaxAppendBatch || off > math.MaxUint64-n {
		return false
	}
	payloads := make([][]byte, 0, n)
	for range n {
		data := body
		if len(fields) == 3 {
			if data, body, ok = cutLength(body); !ok {
				return false
			}
		}
		if len(data) < 3 || data[0] != '{' || data[1] != '"' {
			return false
		}
		payloads = append(payloads, data)
	}
	for k, data := range payloads {
		fn(Position{Offset: off + uint64(k), Epoch: string(fields[1])}, data)
	}
	return true
}

// validEpoch: 1 to 32 lowercase hex digits, as history.NewEpoch makes them.
func validEpoch(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// cutLength splits "<length>\n<payload>…" into the payload and the rest.
func cutLength(b []byte) (data, rest []byte, ok bool) {
	num, after, ok := bytes.Cut(b, []byte{'\n'})
	n, err := strconv.Atoi(string(num))
	if !ok || err != nil || n < 0 || n > len(after) {
		return nil, nil, false
	}
	return after[:n], after[n:], true
}

func (x *redisHistory) receiveOne(room string, pos Position, data []byte) {
	if x.log.Has(room, pos) {
		x.duplicates.Add(1)
		return
	}
	if !json.Valid(data) {
		x.b.decodeErrors.Add(1) // the repair will find it missing, and give it up
		return
	}
	x.b.delivered.Add(1)
	x.accept(room, pos, newPositionedFrame(data, room, pos.Offset, pos.Epoch))
}

// hole tells room's members on this pod that messages from..to could not be
// had (Redis no longer kept them): they should reload the room's state.
func (x *redisHistory) hole(room string, from, to uint64) {
	x.b.logger.Warn("realtime: room history has a hole", "room", room, "from", from, "to", to)
	data, _ := json.Marshal(HistoryGapData{Event: "history_gap", Room: room, From: from, To: to})
	f, err := NewFrame(&Message{ID: newMessageID(x.b.pod), Type: MessageTypeSystem, Room: room, From: "system", Data: data, Timestamp: time.Now().UTC()})
	if err == nil {
		x.b.deliverRoom(room, f)
	}
}

// HistoryGapData is the data of the system event a room's members get when
// the pod could not get messages from..to of the room (they were no longer
// kept): like recovered:false, the client should reload the room's state.
// It is a plain value.
type HistoryGapData struct {
	Event string `json:"event"` // "history_gap"
	Room  string `json:"room"`
	From  uint64 `json:"from"`
	To    uint64 `json:"to"`
}

// appendHistory appends frames[idx[k]] to their rooms' histories in Redis,
// which publishes them, and hands each that got its place to this pod's log
// (which delivers it here, in order); errs[idx[k]] is set for each that
// failed.
func (b *RedisBroadcaster) appendHistory(ctx context.Context, frames []*Frame, idx []int, errs []error) (last Position) {
	items := make([]broadcast.AppendItem, len(idx))
	before := make([]Position, len(idx)) // each room's position here before the append
	for k, i := range idx {
		room := frames[i].Message().Room
		items[k] = broadcast.AppendItem{Key: room, Payload: frames[i].Payload()}
		before[k], _, _ = b.hist.log.Position(room)
	}
	out := make([]broadcast.Appended, len(items))
	b.bus.Append(ctx, b.hist.opts, items, out, history.NewEpoch)
	for k, i := range idx {
		room := items[k].Key
		if out[k].Err != nil {
			errs[i] = out[k].Err
			if b.hist.serves(room) {
				// The script may have run with its reply lost (a time-out):
				// this pod skips its own envelopes, so it reads the room,
				// now and once more later (a read on another connection
				// may run before a stalled script).
				b.hist.scheduleSync(room)
				time.AfterFunc(historyTimeout, func() { b.hist.scheduleSync(room) })
			}
			continue
		}
		if out[k].Epoch == before[k].Epoch && out[k].Offset <= before[k].Offset {
			// Redis gave an offset this pod delivered before it asked: it
			// lost recent writes. The message would be taken for a copy
			// of that one: tell the sender, and start a new epoch.
			errs[i] = fmt.Errorf("%w: room %q offset %d", errHistoryRegressed, room, out[k].Offset)
			b.hist.newEpoch(room, before[k].Epoch)
			continue
		}
		last = Position{Offset: out[k].Offset, Epoch: out[k].Epoch}
		if b.hist.serves(room) { // else nobody here to deliver to
			b.hist.accept(room, last, positionedFrame(frames[i], room, out[k].Offset, out[k].Epoch))
		}
	}
	return last
}
