package broadcast

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A count write (a connection or a membership, +1 or -1) that failed or was
// dropped leaves this pod's entry wrong: a user counted online who is gone,
// for good, since nothing else rewrites it while the lease holds. Such keys
// are remembered, and after the next renewal (Redis answers again) each is
// rewritten from what the pod holds now (Resync's snapshot): the count, or
// no entry.

// maxDirty bounds the keys remembered; past it the oldest failures are not
// repaired (PresenceStats.Dropped and Errors count them).
const maxDirty = 100_000

// dirtyKeys are the users and rooms whose writes failed. All methods may be
// called concurrently.
type dirtyKeys struct {
	mu           sync.Mutex
	users, rooms map[string]struct{}
}

func (d *dirtyKeys) user(u string) { d.add(&d.users, u) }
func (d *dirtyKeys) room(r string) { d.add(&d.rooms, r) }

func (d *dirtyKeys) add(m *map[string]struct{}, k string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if *m == nil {
		*m = map[string]struct{}{}
	}
	if len(*m) < maxDirty {
		(*m)[k] = struct{}{}
	}
}

// takeUser forgets u and reports whether it was remembered.
func (d *dirtyKeys) takeUser(u string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.users[u]
	delete(d.users, u)
	return ok
}

// pending reports whether any key is remembered.
func (d *dirtyKeys) pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.users) > 0 || len(d.rooms) > 0
}

// take returns and forgets the keys remembered.
func (d *dirtyKeys) take() (users, rooms map[string]struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	users, rooms = d.users, d.rooms
	d.users, d.rooms = nil, nil
	return users, rooms
}

// repair rewrites this pod's entry in every key whose write failed, from the
// pod's snapshot. The writes are queued behind the key's others, so a write
// queued after them still counts after the repair.
func (p *Presence) repair() {
	users, rooms := p.dirty.take()
	if len(users) == 0 && len(rooms) == 0 || p.resync == nil {
		return
	}
	for u := range users {
		p.repairLater(u)
	}
	if len(rooms) == 0 {
		return
	}
	_, members := p.resync()
	for r := range rooms {
		want := map[string]int64{}
		for _, u := range members[r] {
			want[p.self+"|"+u]++
		}
		key := p.roomKey(r)
		p.enqueueOp(op{key: key, run: func(ctx context.Context) error { return p.rewriteRoom(ctx, key, want) },
			fail: func() { p.dirty.room(r) }})
	}
}

// writeUser sets this pod's count of user's connections to n.
func (p *Presence) writeUser(ctx context.Context, u string, n int64) error {
	key := p.userKey(u)
	if n > 0 {
		return p.client.Do(ctx, p.client.B().Hset().Key(key).FieldValue().FieldValue(p.self, strconv.FormatInt(n, 10)).Build()).Error()
	}
	return p.client.Do(ctx, p.client.B().Hdel().Key(key).Field(p.self).Build()).Error()
}

// repairLater queues a write of this pod's count of u. With a counter (the
// Handler's CountUser) the count is read and the write queued under the
// lock that orders u's +1s and -1s, so none is counted twice or lost;
// without one, from the snapshot (a +1 or -1 queued meanwhile can leave it
// one off).
func (p *Presence) repairLater(u string) {
	queue := func(n int64) {
		p.enqueueOp(op{key: p.userKey(u), run: func(ctx context.Context) error { return p.writeUser(ctx, u, n) },
			fail: func() { p.dirty.user(u) }})
	}
	if count := p.counter.Load(); count != nil {
		(*count)(u, func(n int) { queue(int64(n)) })
		return
	}
	if p.resync == nil {
		return
	}
	conns, _ := p.resync()
	var n int64
	for _, c := range conns {
		if c == u {
			n++
		}
	}
	queue(n)
}

// SetUserCounter sets how a repair reads this pod's count of a user: count
// calls fn with it under the lock that orders the user's AddConnection
// calls (fn only queues). Without it, repairs read Resync's snapshot.
func (p *Presence) SetUserCounter(count func(user string, fn func(n int))) {
	p.counter.Store(&count)
}

// rewriteRoom makes this pod's fields of room hash key what want says.
func (p *Presence) rewriteRoom(ctx context.Context, key string, want map[string]int64) error {
	have, err := p.client.Do(ctx, p.client.B().Hkeys().Key(key).Build()).AsStrSlice()
	if err != nil {
		return err
	}
	var stale []string
	for _, f := range have {
		if _, ok := want[f]; !ok && strings.HasPrefix(f, p.self+"|") {
			stale = append(stale, f)
		}
	}
	if len(stale) > 0 {
		if err := p.client.Do(ctx, p.client.B().Hdel().Key(key).Field(stale...).Build()).Error(); err != nil {
			return err
		}
	}
	if len(want) == 0 {
		return nil
	}
	fv := p.client.B().Hset().Key(key).FieldValue() // one HSET for all of them
	for f, n := range want {
		fv = fv.FieldValue(f, strconv.FormatInt(n, 10))
	}
	return p.client.Do(ctx, fv.Build()).Error()
}

// retries are the settles waiting to try again after a failure: each at its
// time, or all at once when Redis answers again. All methods may be called
// concurrently.
type retries struct {
	mu      sync.Mutex
	pending map[*time.Timer]func()
}

// after runs fn after d, or at the next now.
func (r *retries) after(d time.Duration, fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[*time.Timer]func(){}
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		if r.take(t) {
			fn()
		}
	})
	r.pending[t] = fn
}

// take forgets t and reports whether it was still pending.
func (r *retries) take(t *time.Timer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.pending[t]
	delete(r.pending, t)
	return ok
}

// now runs every pending retry at once.
func (r *retries) now() {
	r.mu.Lock()
	fns := make([]func(), 0, len(r.pending))
	for t, fn := range r.pending {
		t.Stop()
		fns = append(fns, fn)
	}
	clear(r.pending)
	r.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
