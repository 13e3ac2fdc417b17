package broadcast

import (
	"context"
	"strconv"
	"strings"
	"sync"
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
	conns, members := p.resync()
	userCount := map[string]int64{}
	for _, u := range conns {
		userCount[u]++
	}
	for u := range users {
		n := userCount[u]
		p.enqueueOp(op{key: p.userKey(u), run: func(ctx context.Context) error { return p.writeUser(ctx, u, n) },
			fail: func() { p.dirty.user(u) }})
	}
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

// repairUser rewrites this pod's count of u now if a write of it failed:
// a settle must not see a connection whose -1 was lost. It runs on u's
// writer, so no write of u is in flight.
func (p *Presence) repairUser(ctx context.Context, u string) error {
	if p.resync == nil || !p.dirty.takeUser(u) {
		return nil
	}
	conns, _ := p.resync()
	var n int64
	for _, c := range conns {
		if c == u {
			n++
		}
	}
	if err := p.writeUser(ctx, u, n); err != nil {
		p.dirty.user(u)
		return err
	}
	return nil
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
	for f, n := range want {
		if err := p.client.Do(ctx, p.client.B().Hset().Key(key).FieldValue().FieldValue(f, strconv.FormatInt(n, 10)).Build()).Error(); err != nil {
			return err
		}
	}
	return nil
}
