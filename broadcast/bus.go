// Package broadcast moves opaque payloads between pods through Redis sharded
// pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+) with rueidis. It knows nothing of
// the hub or of the messages it carries.
//
// Keys (rooms) map to a fixed number of partitions by xxhash; partition p is
// the channel "<prefix>.{p<p>}", whose hash tag puts it in one Redis Cluster
// slot, so no command ever crosses slots. A pod subscribes to a partition
// only while it has a key in it (Watch/Unwatch keep a count), and to its own
// direct channel "<prefix>.{d.<pod>}" for payloads addressed to it. Each
// subscription is one rueidis Receive, which resubscribes by itself after
// Redis comes back.
//
// Publishing uses rueidis's auto-pipelining: concurrent publishes share
// round trips. Received payloads are handed to a bounded queue per
// subscription and delivered by its own goroutine, in arrival order; when a
// queue is full the payload is dropped and counted, because a pub/sub reader
// that blocks stalls the Redis connection (and, on one node, publishes too).
package broadcast

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/rueidis"
)

// Options configures a Bus. The zero value is usable; New copies it.
//
// It is a plain value, copied by New.
type Options struct {
	// Prefix starts every channel name. Default "rt".
	Prefix string
	// Partitions is the number of room partitions. Default 64: enough that a
	// pod with members in a few rooms hears a small part of the traffic, few
	// enough that a pod in many rooms holds at most 64 subscriptions.
	Partitions int
	// QueueSize bounds each subscription's hand-off queue. Default 8192.
	QueueSize int
	// CanaryInterval is how often Run sends itself a canary through Redis,
	// which is how Ready knows the link delivers: Ready fails once no canary
	// came back for three intervals. Default 250ms, so that readiness falls
	// within a second of the link breaking (four SPUBLISHes a second).
	CanaryInterval time.Duration
	// Logger receives subscription errors. Default slog.Default().
	Logger *slog.Logger
	// OnSubscribed, if set, is called (on a goroutine of its own) each time
	// Redis confirms the subscription to a partition: the first time and
	// after every reconnect. What was published to the partition before it
	// may not have reached the pod: a caller that keeps history re-reads it.
	OnSubscribed func(partition int)
	// OnDrop, if set, is called (on the receiving goroutine; it must not
	// block) when a payload of a partition was dropped because the hand-off
	// queue was full.
	OnDrop func(partition int)
}

// Handler receives payloads. direct reports whether it came on the pod's
// direct channel. It runs on the subscription's delivery goroutine: one at a
// time per partition, in arrival order. payload is only valid during the call.
type Handler func(direct bool, payload []byte)

// Stats are cumulative counters of a Bus.
//
// It is a plain value: a copy taken when Stats was called.
type Stats struct {
	// Published and PublishErrors count Publish* calls that succeeded or failed.
	Published, PublishErrors uint64
	// Received counts payloads handed to the Handler; Dropped those lost
	// because a hand-off queue was full.
	Received, Dropped uint64
	// Subscriptions counts subscription confirmations from Redis, first ones
	// and those after a reconnect.
	Subscriptions uint64
	// Partitions is how many partitions the pod listens to now.
	Partitions int
	// CanaryRTT is how long the last canary took from this pod through
	// Redis and back (the link's lag); CanaryAge how long ago it came back
	// (0: none yet). Ready fails once CanaryAge passes three
	// CanaryIntervals.
	CanaryRTT, CanaryAge time.Duration
}

// Bus is one pod's link to the others. All methods may be called
// concurrently.
type Bus struct {
	client rueidis.Client
	pod    string
	opts   Options
	handle Handler

	mu      sync.Mutex
	running bool
	ctx     context.Context // Run's, while running
	watch   []int32         // keys watched per partition
	subs    map[int]*subscription
	stopped map[int]chan struct{} // partitions whose last subscription is still stopping

	confirmedMu sync.Mutex
	confirmed   map[string]int64 // channel → when Redis confirmed the subscription (unix ns)
	// brokenSince is when the link was last known good before the canary
	// showed it broken: rueidis resubscribes after a reconnect without
	// reporting the drop, so confirmations older than this are stale.
	brokenSince atomic.Int64

	lastCanary atomic.Int64 // unix nanoseconds when a canary came back
	canaryRTT  atomic.Int64 // nanoseconds the last canary took through Redis
	started    atomic.Int64
	wg         sync.WaitGroup

	published, publishErrors, received, dropped, subscribed atomic.Uint64
}

type subscription struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Bus for pod (letters, digits, '-', '_') that hands what it
// receives to handle.
func New(client rueidis.Client, pod string, opts Options, handle Handler) *Bus {
	if opts.Prefix == "" {
		opts.Prefix = "rt"
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 64
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.CanaryInterval <= 0 {
		opts.CanaryInterval = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Bus{
		client: client, pod: pod, opts: opts, handle: handle,
		watch:     make([]int32, opts.Partitions),
		subs:      map[int]*subscription{},
		stopped:   map[int]chan struct{}{},
		confirmed: map[string]int64{},
	}
}

// Partitions returns how many partitions keys are spread over.
func (b *Bus) Partitions() int { return b.opts.Partitions }

// Partition returns the partition of key.
func (b *Bus) Partition(key string) int {
	return int(xxhash.Sum64String(key) % uint64(b.opts.Partitions))
}

// PartitionChannel returns the channel of partition p.
func (b *Bus) PartitionChannel(p int) string {
	return b.opts.Prefix + ".{p" + strconv.Itoa(p) + "}"
}

// DirectChannel returns the direct channel of pod.
func (b *Bus) DirectChannel(pod string) string {
	return b.opts.Prefix + ".{d." + pod + "}"
}

// Publish sends payload to every pod that listens to key's partition.
func (b *Bus) Publish(ctx context.Context, key string, payload []byte) error {
	return b.publish(ctx, b.PartitionChannel(b.Partition(key)), payload, false)
}

// PublishDirect sends payload to pod's direct channel. It returns an error
// wrapping ErrNoPod if no pod listens there (SPUBLISH reached nobody).
func (b *Bus) PublishDirect(ctx context.Context, pod string, payload []byte) error {
	return b.publish(ctx, b.DirectChannel(pod), payload, true)
}

func (b *Bus) publish(ctx context.Context, channel string, payload []byte, direct bool) error {
	cmd := b.client.B().Spublish().Channel(channel).Message(rueidis.BinaryString(payload)).Build()
	return b.result(channel, direct, b.client.Do(ctx, cmd))
}

// result counts a publish's outcome and turns it into an error.
func (b *Bus) result(channel string, direct bool, r rueidis.RedisResult) error {
	n, err := r.AsInt64()
	if err != nil {
		b.publishErrors.Add(1)
		return fmt.Errorf("broadcast: publish to %s: %w", channel, err)
	}
	b.published.Add(1)
	if direct && n == 0 {
		return fmt.Errorf("%w: %s", ErrNoPod, channel)
	}
	return nil
}

// Item is one payload of a PublishBatch: to Key's partition, or with Pod
// set, to that pod's direct channel.
type Item struct {
	Key, Pod string
	Payload  []byte
}

// PublishBatch sends items in one pipelined round trip (per Redis node),
// in order, and sets errs[i] (len(errs) >= len(items)) for each that failed,
// as Publish and PublishDirect would.
func (b *Bus) PublishBatch(ctx context.Context, items []Item, errs []error) {
	cmds := make(rueidis.Commands, len(items))
	channels := make([]string, len(items))
	for i, it := range items {
		channels[i] = b.PartitionChannel(b.Partition(it.Key))
		if it.Pod != "" {
			channels[i] = b.DirectChannel(it.Pod)
		}
		cmds[i] = b.client.B().Spublish().Channel(channels[i]).Message(rueidis.BinaryString(it.Payload)).Build()
	}
	for i, r := range b.client.DoMulti(ctx, cmds...) {
		errs[i] = b.result(channels[i], items[i].Pod != "", r)
	}
}

// Watch counts one more key of the pod in key's partition; the first one
// subscribes to it (asynchronously, while Run runs). It never blocks on Redis.
func (b *Bus) Watch(key string) { b.adjust(b.Partition(key), +1) }

// Unwatch undoes a Watch; the last key of a partition unsubscribes from it.
func (b *Bus) Unwatch(key string) { b.adjust(b.Partition(key), -1) }

// WatchAll listens to every partition, for a hub that cannot say which rooms
// it has.
func (b *Bus) WatchAll() {
	for p := range b.opts.Partitions {
		b.adjust(p, +1)
	}
}

func (b *Bus) adjust(p int, delta int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watch[p] += delta
	if b.watch[p] < 0 {
		b.watch[p] = 0
	}
	if b.running {
		b.reconcile(p)
	}
}

// reconcile starts or stops partition p's subscription to match its count.
// Called with mu held; starting and cancelling a Receive do not block.
func (b *Bus) reconcile(p int) {
	sub, have := b.subs[p]
	switch want := b.watch[p] > 0; {
	case want && !have:
		b.subs[p] = b.subscribe(b.PartitionChannel(p), p, b.stopped[p])
		delete(b.stopped, p)
	case !want && have:
		sub.cancel()
		delete(b.subs, p)
		b.stopped[p] = sub.done
	}
}

// subscribe runs one Receive with its hand-off queue and delivery goroutine,
// after prev (the channel's previous subscription, if any) has stopped. p is
// the channel's partition, or -1 for the pod's direct channel.
func (b *Bus) subscribe(channel string, p int, prev <-chan struct{}) *subscription {
	direct := p < 0
	ctx, cancel := context.WithCancel(b.ctx)
	s := &subscription{cancel: cancel, done: make(chan struct{})}
	queue := make(chan []byte, b.opts.QueueSize)
	b.wg.Go(func() {
		for payload := range queue {
			b.received.Add(1)
			b.handle(direct, payload)
		}
	})
	b.wg.Go(func() {
		defer close(s.done)
		defer close(queue)
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return
			}
		}
		hctx := rueidis.WithOnSubscriptionHook(ctx, func(s rueidis.PubSubSubscription) {
			b.confirmedMu.Lock()
			if s.Kind == "ssubscribe" {
				b.confirmed[s.Channel] = time.Now().UnixNano()
			} else {
				delete(b.confirmed, s.Channel)
			}
			b.confirmedMu.Unlock()
			if s.Kind == "ssubscribe" {
				b.subscribed.Add(1)
				if p >= 0 && b.opts.OnSubscribed != nil {
					go b.opts.OnSubscribed(p)
				}
			}
		})
		defer func() {
			b.confirmedMu.Lock()
			delete(b.confirmed, channel)
			b.confirmedMu.Unlock()
		}()
		for ctx.Err() == nil {
			err := b.client.Receive(hctx, b.client.B().Ssubscribe().Channel(channel).Build(), func(m rueidis.PubSubMessage) {
				if direct && b.isCanary(m.Message) {
					return
				}
				select {
				case queue <- []byte(m.Message):
				default:
					b.dropped.Add(1) // never block the Redis connection
					if p >= 0 && b.opts.OnDrop != nil {
						b.opts.OnDrop(p)
					}
				}
			})
			if ctx.Err() != nil {
				return
			}
			b.opts.Logger.Warn("broadcast: subscription ended; retrying", "channel", channel, "err", err)
			select { // rueidis retries inside Receive; this covers errors it gives up on
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	return s
}

// Run subscribes to the pod's direct channel and to the watched partitions,
// sends itself a canary every CanaryInterval, and returns when ctx ends,
// after every subscription has stopped. It may be called once at a time.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return ErrRunning
	}
	b.running, b.ctx = true, ctx
	b.started.Store(time.Now().UnixNano())
	b.lastCanary.Store(0)
	direct := b.subscribe(b.DirectChannel(b.pod), -1, nil)
	for p := range b.watch {
		b.reconcile(p)
	}
	b.mu.Unlock()

	t := time.NewTicker(b.opts.CanaryInterval)
	defer t.Stop()
	b.canary(ctx)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
			b.canary(ctx)
		}
	}

	b.mu.Lock()
	b.running = false
	direct.cancel()
	for p, s := range b.subs {
		s.cancel()
		delete(b.subs, p)
	}
	clear(b.stopped)
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

// Listening reports whether what is published to key from now on reaches
// this pod: the link delivers (Ready) and Redis confirmed the subscription
// to key's partition since the link last broke.
func (b *Bus) Listening(key string) bool {
	if b.Ready() != nil {
		return false
	}
	b.confirmedMu.Lock()
	at := b.confirmed[b.PartitionChannel(b.Partition(key))]
	b.confirmedMu.Unlock()
	return at != 0 && at > b.brokenSince.Load()
}

// Stats returns the bus's counters.
func (b *Bus) Stats() Stats {
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	return Stats{
		Published: b.published.Load(), PublishErrors: b.publishErrors.Load(),
		Received: b.received.Load(), Dropped: b.dropped.Load(),
		Subscriptions: b.subscribed.Load(), Partitions: n,
		CanaryRTT: time.Duration(b.canaryRTT.Load()), CanaryAge: canaryAge(b.lastCanary.Load()),
	}
}
