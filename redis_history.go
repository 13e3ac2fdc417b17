package realtime

import (
	"bytes"
	"context"
	"encoding/json"
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
	queued  map[string]struct{}      // rooms waiting in syncCh
	joining map[string][]pendingJoin // joins waiting for a room's read, by room
	syncCh  chan string

	syncs, syncErrors, fetches, duplicates, holes atomic.Uint64
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
		refs: map[string]int{}, queued: map[string]struct{}{}, joining: map[string][]pendingJoin{},
		syncCh: make(chan string, 1<<16),
	}
	x.log = history.NewFollower(o, b.deliverRoom)
	x.opts = broadcast.HistoryOptions{Size: x.log.Options().Size, TTL: x.log.Options().TTL, MetaTTL: x.log.Options().MetaTTL}
	x.log.OnHole = x.hole
	return x
}

func (x *redisHistory) keeps(msg *Message) bool { return keepsHistory(msg) }

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
	if len(rest) == 0 {
		return
	}
	var after uint64
	if pos, known, _ := x.log.Position(room); known {
		after = pos.Offset
		for _, j := range rest {
			if j.since != nil && j.since.Epoch == pos.Epoch {
				after = min(after, j.since.Offset)
			}
		}
	}
	cur, entries, err := x.fetchWaiting(room, after)
	if err != nil {
		x.b.logger.Warn("realtime: join: room history unreadable", "room", room, "err", err)
		for _, j := range rest {
			j.fail()
		}
		return
	}
	for _, j := range rest {
		if x.log.Sync(room, cur, entries, j.since, j.fn) {
			x.scheduleSync(room)
		}
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

// scheduleSync queues room for a read from Redis (once, however often asked
// before it is read).
func (x *redisHistory) scheduleSync(room string) {
	x.mu.Lock()
	x.queueLocked(room)
	x.mu.Unlock()
}

func (x *redisHistory) queueLocked(room string) {
	if _, ok := x.queued[room]; ok {
		return
	}
	select {
	case x.syncCh <- room:
		x.queued[room] = struct{}{}
	default: // a later trigger (resubscription, next message) queues it again
	}
}

// resyncPartition queues every served room of partition p: Redis confirmed
// the pod's subscription to it, so what was published before may be missing.
func (x *redisHistory) resyncPartition(p int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for room := range x.refs {
		if x.b.bus.Partition(room) == p {
			x.queueLocked(room)
		}
	}
}

// run reads queued rooms until ctx ends, with syncWorkers workers, and
// sweeps the log every few seconds.
func (x *redisHistory) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range syncWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case room := <-x.syncCh:
					x.mu.Lock()
					delete(x.queued, room)
					x.mu.Unlock()
					x.sync(ctx, room)
				}
			}
		})
	}
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-t.C:
			x.log.Sweep(now)
		}
	}
}

// sync reads room from Redis after the pod's position and delivers what the
// pod missed. A gap that remains (messages held back that Redis did not
// have yet) or a failed read while the link is up is tried again shortly.
func (x *redisHistory) sync(ctx context.Context, room string) {
	x.mu.Lock()
	served := x.refs[room] > 0
	x.mu.Unlock()
	if !served {
		return
	}
	pos, known, _ := x.log.Position(room)
	after := uint64(0)
	if known {
		after = pos.Offset
	}
	cur, entries, err := x.fetch(room, after, historyTimeout)
	if err == nil && known && after > 0 && cur.Epoch != pos.Epoch {
		cur, entries, err = x.fetch(room, 0, historyTimeout) // a new epoch: all of it is new
	}
	if err != nil {
		x.syncErrors.Add(1)
		if ctx.Err() == nil && x.b.bus.Ready() == nil {
			time.AfterFunc(200*time.Millisecond, func() { x.scheduleSync(room) })
		}
		return
	}
	x.syncs.Add(1)
	if x.log.Sync(room, cur, entries, nil, nil) {
		time.AfterFunc(50*time.Millisecond, func() { x.scheduleSync(room) })
	}
}

// fetch reads room's position and its messages after offset after.
func (x *redisHistory) fetch(room string, after uint64, timeout time.Duration) (Position, []history.Entry[*Frame], error) {
	x.fetches.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	off, epoch, raw, err := x.b.bus.Fetch(ctx, x.opts, room, after, history.NewEpoch())
	if err != nil {
		return Position{}, nil, err
	}
	entries := make([]history.Entry[*Frame], 0, len(raw))
	for _, e := range raw {
		if !validObject(e.Data) {
			x.b.decodeErrors.Add(1)
			continue
		}
		f := newPositionedFrame(e.Data, room, e.Offset, epoch)
		entries = append(entries, history.Entry[*Frame]{Offset: e.Offset, At: e.At, Size: len(f.wire), Value: f})
	}
	return Position{Offset: off, Epoch: epoch}, entries, nil
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

// validObject reports whether b is a JSON object (what the history splices
// offsets into).
func validObject(b []byte) bool { return len(b) > 1 && b[0] == '{' && json.Valid(b) }

// receive takes an envelope's positioned payloads: "<offset> <epoch>\n"
// then the JSON, or "<first> <epoch> <n>\n" then n × "<length>\n<JSON>".
// Each is dropped if delivered already (a pod's own messages come back after
// its append delivered them), else handed to the log.
func (x *redisHistory) receive(room string, rest []byte) {
	line, body, ok := bytes.Cut(rest, []byte{'\n'})
	fields := bytes.Fields(line)
	if !ok || len(fields) < 2 || len(fields) > 3 {
		x.b.decodeErrors.Add(1)
		return
	}
	off, err := strconv.ParseUint(string(fields[0]), 10, 64)
	n := uint64(1)
	if err == nil && len(fields) == 3 {
		n, err = strconv.ParseUint(string(fields[2]), 10, 64)
	}
	if err != nil {
		x.b.decodeErrors.Add(1)
		return
	}
	epoch := string(fields[1])
	for k := range n {
		data := body
		if len(fields) == 3 {
			if data, body, ok = cutLength(body); !ok {
				x.b.decodeErrors.Add(1)
				return
			}
		}
		x.receiveOne(room, Position{Offset: off + k, Epoch: epoch}, data)
	}
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
	if !validObject(data) {
		x.b.decodeErrors.Add(1)
		return
	}
	x.b.delivered.Add(1)
	x.accept(room, pos, newPositionedFrame(data, room, pos.Offset, pos.Epoch))
}

// hole tells room's members on this pod that messages from..to could not be
// had (Redis no longer kept them): they should reload the room's state.
func (x *redisHistory) hole(room string, from, to uint64) {
	x.holes.Add(to - from + 1)
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
