package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/rueidis"
)

// Presence answers "is this user online on some pod" and "who is in this
// room" across pods, from entries each pod writes to Redis. Every entry
// belongs to a pod incarnation (the pod ID plus a random suffix per start)
// that must renew its lease in a sorted set before the TTL runs out; entries
// of an incarnation whose lease expired are ignored by queries and removed
// when seen, so a pod that dies leaves no ghosts. Keys are hash-tagged per
// user and per room; no command crosses slots.
//
// Writes are queued and sent by a few goroutines, each key's by the same
// one in order (a full queue drops and counts: the caller's worker never
// waits on Redis). When a renewal finds the lease
// gone (Redis restarted empty) the pod rewrites its entries from Resync,
// and repairs those of the rewrites that fail.
// All methods may be called concurrently.
type Presence struct {
	client rueidis.Client
	prefix string
	self   string // incarnation
	ttl    time.Duration
	resync func() (users []string, rooms map[string][]string)
	logger *slog.Logger

	queues  [writers]chan op
	dirty   dirtyKeys     // keys whose writes failed, for repair
	healed  chan struct{} // a write succeeded while keys wait for repair
	counter atomic.Pointer[func(user string, fn func(n int))]
	retries retries // settles waiting to try again
	dropped atomic.Uint64
	errors  atomic.Uint64

	liveMu   sync.Mutex
	leases   map[string]bool // incarnation → lease still valid; absent: unknown
	liveTime time.Time
}

// leaseHorizon is how long an expired lease is remembered, so that its
// entries can be recognised as a dead pod's and removed.
const leaseHorizon = time.Hour

// NewPresence returns the presence registry of pod. ttl (default 30 s) is
// how long a dead pod's entries keep counting. resync returns what the pod
// holds now: its users, once per connection, and the users of each of its
// rooms, once per connection in it.
func NewPresence(client rueidis.Client, prefix, pod string, ttl time.Duration, logger *slog.Logger,
	resync func() (users []string, rooms map[string][]string)) *Presence {
	if prefix == "" {
		prefix = "rt"
	}
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	var b [4]byte
	rand.Read(b[:])
	p := &Presence{client: client, prefix: prefix, self: pod + "#" + hex.EncodeToString(b[:]), ttl: ttl,
		resync: resync, logger: logger, healed: make(chan struct{}, 1)}
	for i := range p.queues {
		p.queues[i] = make(chan op, queueSize/writers)
	}
	return p
}

// writers is how many goroutines write presence entries; queueSize how many
// writes may wait, over all of them.
const (
	writers   = 4
	queueSize = 65536
)

// op is one queued write: run does it (key's writes run in order); fail,
// if set, is told when it failed or was dropped.
type op struct {
	key  string
	run  func(ctx context.Context) error
	fail func()
}

func (p *Presence) podsKey() string            { return p.prefix + ".{pres}.pods" }
func (p *Presence) userKey(user string) string { return p.prefix + ".{pres.u." + user + "}" }
func (p *Presence) roomKey(room string) string { return p.prefix + ".{pres.r." + room + "}" }

func (p *Presence) enqueue(cmd rueidis.Completed) {
	key := ""
	if ks := cmd.Commands(); len(ks) > 1 {
		key = ks[1]
	}
	p.enqueueOp(op{key: key, run: func(ctx context.Context) error { return p.client.Do(ctx, cmd).Error() }})
}

// enqueueOp queues o on its key's writer.
func (p *Presence) enqueueOp(o op) {
	select {
	case p.queues[xxhash.Sum64String(o.key)%writers] <- o:
	default:
		p.dropped.Add(1)
		if o.fail != nil {
			o.fail() // repaired after the next renewal
		}
	}
}

// AddMember counts user in room on this pod by delta (+1 on join, -1 on
// leave; a user may be in a room through several connections).
func (p *Presence) AddMember(room, user string, delta int64) {
	key, field := p.roomKey(room), p.self+"|"+user
	p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
		return countLua.Exec(ctx, p.client, []string{key}, []string{field, strconv.FormatInt(delta, 10)}).Error()
	}, fail: func() { p.dirty.room(room) }})
}

// Run renews the lease every TTL/3, writes queued entries, and returns when
// ctx ends, after writing what is still queued (for up to stopGrace: the
// connections a shutdown closed take their entries with them) and expiring
// this pod's lease, so that its entries stop counting at once and other
// pods remove any left as a dead pod's.
func (p *Presence) Run(ctx context.Context) error {
	var writing sync.WaitGroup
	for _, q := range p.queues {
		writing.Go(func() { p.write(ctx, q) })
	}
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	p.renew(ctx)
	for {
		select {
		case <-ctx.Done():
			writing.Wait()
			cctx, cancel := context.WithTimeout(context.Background(), stopGrace)
			p.client.Do(cctx, p.client.B().Zadd().Key(p.podsKey()).ScoreMember().
				ScoreMember(float64(time.Now().Add(-time.Millisecond).UnixMilli()), p.self).Build())
			cancel()
			return nil
		case <-t.C:
			p.renew(ctx)
		case <-p.healed: // Redis answers again: repair now, not at the next renewal
			p.repair()
			p.retries.now() // and settle what waits, after the repairs

		}
	}
}

// stopGrace bounds the writes a stopping pod still makes.
const stopGrace = 2 * time.Second

// write runs the writes of q until ctx ends, then those still queued, for
// up to stopGrace.
func (p *Presence) write(ctx context.Context, q chan op) {
	for {
		select {
		case <-ctx.Done():
			p.drain(q)
			return
		case o := <-q:
			p.do(ctx, o)
		}
	}
}

// drain writes what q holds, for up to stopGrace.
func (p *Presence) drain(q chan op) {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case o := <-q:
			p.do(ctx, o)
		default:
			return
		}
	}
}

// do runs one write.
func (p *Presence) do(ctx context.Context, o op) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := o.run(wctx); err != nil && !rueidis.IsRedisNil(err) {
		p.errors.Add(1)
		if o.fail != nil {
			o.fail() // repaired once Redis answers again, or retried
		}
		return
	}
	if p.dirty.pending() {
		select {
		case p.healed <- struct{}{}:
		default:
		}
	}
}

// renewLua sets pod ARGV[1]'s lease to ARGV[2] and returns its score before,
// or -1 if it had none: in one step, so that Redis losing its data between a
// read of the lease and its write cannot go unnoticed (read as present, then
// written back into an emptied Redis, the lease hid the loss from every later
// renewal, and the pod's entries stayed missing: TestFailedRewriteAfterRedis-
// CameBackEmptyIsRepaired failed that way now and then).
var renewLua = rueidis.NewLuaScript(`
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if not old then return '-1' end
return old`)

// renew extends the lease. If Redis did not have it (first start, Redis came
// back empty) or it had expired (this pod stalled, and others may have
// removed its entries as a dead pod's), the pod writes all its entries again;
// those writes that fail are repaired (see repair) once Redis answers a
// write, at the latest at the next renewal.
func (p *Presence) renew(ctx context.Context) {
	// Not TTL/3: right after Redis comes back the client must reconnect,
	// and a deadline shorter than that can cancel every attempt in turn.
	rctx, cancel := context.WithTimeout(ctx, max(p.ttl/3, 5*time.Second))
	defer cancel()
	now := time.Now()
	expiry := strconv.FormatInt(now.Add(p.ttl).UnixMilli(), 10)
	old, err := renewLua.Exec(rctx, p.client, []string{p.podsKey()}, []string{p.self, expiry}).AsFloat64()
	if err != nil {
		p.errors.Add(1)
		return
	}
	lost := old < float64(now.UnixMilli()) // absent (-1) or expired
	forgotten := strconv.FormatInt(now.Add(-leaseHorizon).UnixMilli(), 10)
	p.client.Do(rctx, p.client.B().Zremrangebyscore().Key(p.podsKey()).Min("-inf").Max(forgotten).Build())
	p.repair() // writes that failed or were dropped since the last renewal
	if lost && p.resync != nil {
		users, rooms := p.resync()
		conns := map[string]int64{}
		for _, u := range users {
			conns[u]++
		}
		// A rewrite that fails is repaired like any failed write: the lease
		// is back, so no later renewal would find it gone and rewrite it.
		// Right after a restart that is common: the client notices that an
		// idle connection died only when it next writes on it, and does not
		// retry writes, so the first write on each of its connections fails.
		for u, n := range conns {
			p.enqueueOp(op{key: p.userKey(u), run: func(ctx context.Context) error { return p.writeUser(ctx, u, n) },
				fail: func() { p.dirty.user(u) }})
		}
		for room, members := range rooms {
			counts := map[string]int64{}
			for _, u := range members {
				counts[u]++
			}
			key := p.roomKey(room)
			for u, n := range counts {
				// Set, not add: the room hash may still hold this incarnation's
				// counts if only the lease was lost.
				cmd := p.client.B().Hset().Key(key).FieldValue().FieldValue(p.self+"|"+u, strconv.FormatInt(n, 10)).Build()
				p.enqueueOp(op{key: key, run: func(ctx context.Context) error { return p.client.Do(ctx, cmd).Error() },
					fail: func() { p.dirty.room(room) }})
			}
		}
	}
}

// leaseState returns every remembered incarnation and whether its lease is
// valid, cached for at most 200 ms. An incarnation that is absent is unknown
// (Redis may have restarted and the pod not renewed yet): its entries do not
// count, but are not removed either.
func (p *Presence) leaseState(ctx context.Context) (map[string]bool, error) {
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	if p.leases != nil && time.Since(p.liveTime) < 200*time.Millisecond {
		return p.leases, nil
	}
	scores, err := p.client.Do(ctx, p.client.B().Zrange().Key(p.podsKey()).Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		return nil, fmt.Errorf("broadcast: presence leases: %w", err)
	}
	now := float64(time.Now().UnixMilli())
	p.leases = make(map[string]bool, len(scores))
	for _, s := range scores {
		p.leases[s.Member] = s.Score >= now
	}
	p.liveTime = time.Now()
	return p.leases, nil
}

// Online reports whether user has a connection on a live pod.
func (p *Presence) Online(ctx context.Context, user string) (bool, error) {
	n, err := p.Connections(ctx, user)
	return n > 0, err
}

// RoomUsers returns the users in room on live pods, each once, in no
// particular order.
func (p *Presence) RoomUsers(ctx context.Context, room string) ([]string, error) {
	ms, err := p.roomCounts(ctx, room)
	if err != nil {
		return nil, err
	}
	users := make([]string, len(ms))
	for i, m := range ms {
		users[i] = m.User
	}
	return users, nil
}

// forget removes fields of dead incarnations, in the background.
func (p *Presence) forget(key string, fields []string) {
	if len(fields) > 0 {
		p.enqueue(p.client.B().Hdel().Key(key).Field(fields...).Build())
	}
}

// PresenceStats are counters of a Presence.
//
// It is a plain value: a copy taken when Stats was called.
type PresenceStats struct {
	// Dropped counts writes lost to a full queue; Errors writes and lease
	// renewals Redis refused. A resync repairs both after the next renewal
	// that finds the lease gone.
	Dropped, Errors uint64
}

// Stats returns the counters.
func (p *Presence) Stats() PresenceStats {
	return PresenceStats{Dropped: p.dropped.Load(), Errors: p.errors.Load()}
}
