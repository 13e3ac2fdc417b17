package realtime

import (
	"context"
	"sync"
	"time"

	"github.com/realtimehub/realtime/history"
)

// The sync queue: rooms waiting to be read from Redis. The queued set is the
// source of truth (never dropped, however many rooms a resubscription
// queues), a room is read by one worker at a time, and a room asked for
// again while it is being read is read once more after.

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
	x.queued[room] = struct{}{}
	x.order = append(x.order, room)
	select {
	case x.wake <- struct{}{}:
	default: // a worker is awake already and will see it
	}
}

// next takes a queued room that no worker is reading, waiting until there
// is one or ctx ends.
func (x *redisHistory) next(ctx context.Context) (string, bool) {
	for {
		x.mu.Lock()
		for i, room := range x.order {
			if _, busy := x.syncing[room]; busy {
				continue
			}
			if i == 0 {
				x.order = x.order[1:] // the usual case: O(1)
			} else {
				x.order = append(x.order[:i], x.order[i+1:]...)
			}
			delete(x.queued, room)
			x.syncing[room] = struct{}{}
			more := len(x.order) > 0
			x.mu.Unlock()
			if more {
				select { // let another worker take the rest
				case x.wake <- struct{}{}:
				default:
				}
			}
			return room, true
		}
		x.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-x.wake:
		}
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
				room, ok := x.next(ctx)
				if !ok {
					return
				}
				x.sync(ctx, room)
				x.mu.Lock()
				delete(x.syncing, room)
				x.mu.Unlock()
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
// have yet), a read that came too late, or a failed read while the link is
// up is tried again shortly.
func (x *redisHistory) sync(ctx context.Context, room string) {
	x.mu.Lock()
	served := x.refs[room] > 0
	x.mu.Unlock()
	if !served {
		return
	}
	before, known, _ := x.log.Position(room)
	after := uint64(0)
	if known {
		after = before.Offset
	}
	cur, entries, err := x.fetch(room, after, historyTimeout)
	if err == nil && after > 0 && cur.Epoch != before.Epoch {
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
	x.after(room, before, x.log.Sync(room, before, cur, entries, nil, nil))
}

// after acts on what a Sync of room found: a gap or a late read is read
// again shortly; a Redis that lost writes (offsets behind what was
// delivered, same epoch) is made to start a new epoch, so that the offsets
// it will give again are not taken for ones already delivered.
func (x *redisHistory) after(room string, before Position, res history.SyncResult) {
	switch {
	case res.Regressed:
		x.newEpoch(room, before.Epoch)
	case res.Gap || res.Stale:
		time.AfterFunc(50*time.Millisecond, func() { x.scheduleSync(room) })
	}
}

// newEpoch makes Redis start room over in a new epoch if it is still in
// epoch old, and reads the room again.
func (x *redisHistory) newEpoch(room, old string) {
	x.regressions.Add(1)
	x.b.logger.Warn("realtime: Redis lost recent messages of a room: starting a new epoch", "room", room, "epoch", old)
	ctx, cancel := context.WithTimeout(context.Background(), historyTimeout)
	defer cancel()
	if err := x.b.bus.NewEpoch(ctx, room, old, history.NewEpoch()); err != nil {
		x.b.logger.Warn("realtime: new epoch", "room", room, "err", err)
	}
	x.scheduleSync(room)
}

// fetch reads room's position and its messages after offset after.
func (x *redisHistory) fetch(room string, after uint64, timeout time.Duration) (Position, []history.Entry[*Frame], error) {
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
