package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// chaosRun is one -chaos run: Redis with an AOF, pods sharing a port
// behind it, clients spread over rooms, one publisher per room, and the
// faults injected while they talk.
type chaosRun struct {
	cfg     *chaosConfig
	outDir  string
	command string // the command line, quoted
	t0      time.Time
	redis   *chaosRedis
	pods    []*chaosPod
	url     string
	rooms   []string
	books   map[string]*roomBook
	clients []*chaosClient // the room members, then the publishers
	pubs    []*publisher
	faults  []faultRec
	closing time.Time // when the clients were told to stop

	wg sync.WaitGroup // the clients' loops
}

// runChaos runs -chaos and returns the exit status: 1 when the run failed
// or its integrity failures exceed -chaos-max-lost.
func runChaos(ctx context.Context, cfg *config) int {
	r := &chaosRun{cfg: &cfg.chaos, outDir: cfg.outDir, command: cfg.command, t0: time.Now()}
	kinds, err := r.cfg.faultKinds()
	if err == nil {
		err = r.cfg.check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 1
	}
	defer r.stopProcs()
	if err := r.startProcs(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: chaos:", err)
		return 1
	}
	rep, err := r.drive(ctx, kinds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: chaos:", err)
		return 1
	}
	rep.print()
	if err := rep.write(r.outDir); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest: chaos:", err)
		return 1
	}
	return rep.verdict(r.cfg.maxBad)
}

// startProcs starts Redis, in a directory of its own under the output
// directory, and the pods.
func (r *chaosRun) startProcs(ctx context.Context) error {
	dir, err := os.MkdirTemp(r.outDir, "chaos-redis-")
	if err != nil {
		return err
	}
	redisAddr, err := freeAddr()
	if err != nil {
		return err
	}
	r.redis = &chaosRedis{addr: redisAddr, dir: dir, outDir: r.outDir}
	if err := r.redis.start(); err != nil {
		return err
	}
	bin, err := serverBinary("realtime")
	if err != nil {
		return err
	}
	shared, err := freeAddr()
	if err != nil {
		return err
	}
	r.url = "ws://" + shared + "/ws"
	for i := range r.cfg.pods {
		admin, err := freeAddr()
		if err != nil {
			return err
		}
		p := &chaosPod{idx: i, bin: bin, shared: shared, admin: admin, redisAddr: redisAddr, outDir: r.outDir}
		r.pods = append(r.pods, p)
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "chaos: redis %s (AOF in %s), %d pods on %s\n", redisAddr, dir, len(r.pods), shared)
	return nil
}

// stopProcs stops the pods (SIGTERM), then Redis, and removes Redis's
// directory.
func (r *chaosRun) stopProcs() {
	for i := len(r.pods) - 1; i >= 0; i-- {
		r.pods[i].stop()
	}
	if r.redis != nil {
		r.redis.shutdown()
		os.RemoveAll(r.redis.dir)
	}
}

// drive runs the clients and publishers through warm-up, faults and tail,
// lets the run go quiet, reads each room's final position, and tallies.
func (r *chaosRun) drive(ctx context.Context, kinds []string) (*chaosReport, error) {
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	r.startClients(cctx)
	defer r.closeClients(stopClients)
	if !waitUntil(ctx, 90*time.Second, r.allJoined) {
		return nil, fmt.Errorf("only %d of %d connections joined in 90 s", r.joinedCount(), len(r.clients))
	}
	fmt.Fprintf(os.Stderr, "chaos: %d connections joined in %.1f s; publishing %.0f msgs/s over %d rooms\n",
		len(r.clients), time.Since(r.t0).Seconds(), r.cfg.rate, len(r.rooms))
	stopPub := make(chan struct{})
	var pubWG sync.WaitGroup
	for _, p := range r.pubs {
		pubWG.Go(func() { p.loop(cctx, stopPub) })
	}
	pubStart := time.Now()
	sleepCtx(ctx, r.cfg.warmup)
	r.faults = r.injectFaults(ctx, kinds)
	sleepCtx(ctx, r.cfg.tail)
	close(stopPub)
	pubWG.Wait()
	pubElapsed := time.Since(pubStart)
	ends := r.quiesce(ctx)
	r.closeClients(stopClients)
	return r.tally(ends, pubElapsed), nil
}

// startClients starts every room member's and publisher's loop. Member i
// is user u<i> in room chaos-<i mod rooms>; the publisher of room k is
// pub-<k>.
func (r *chaosRun) startClients(ctx context.Context) {
	r.books = map[string]*roomBook{}
	for k := range r.cfg.rooms {
		room := fmt.Sprintf("chaos-%d", k)
		r.rooms = append(r.rooms, room)
		r.books[room] = newRoomBook()
	}
	for i := range r.cfg.conns {
		room := r.rooms[i%len(r.rooms)]
		r.clients = append(r.clients, newChaosClient(i, fmt.Sprintf("u%d", i), room, r.url, r.books[room]))
	}
	interval := time.Duration(float64(time.Second) * float64(len(r.rooms)) / r.cfg.rate)
	for k, room := range r.rooms {
		cl := newChaosClient(r.cfg.conns+k, fmt.Sprintf("pub-%d", k), room, r.url, r.books[room])
		r.pubs = append(r.pubs, newPublisher(cl, interval))
		r.clients = append(r.clients, cl)
	}
	ramp := make(chan struct{}, 64)
	for _, cl := range r.clients {
		cl.tr.t0 = r.t0
		r.wg.Go(func() { cl.loop(ctx, ramp) })
	}
}

// closeClients ends the clients' loops and closes their connections, and
// waits up to 15 s for the loops. A second call does nothing.
func (r *chaosRun) closeClients(cancel context.CancelFunc) {
	if r.closing.IsZero() {
		r.closing = time.Now()
	}
	cancel()
	for _, cl := range r.clients {
		if c := cl.conn.Load(); c != nil {
			c.Close()
		}
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		fmt.Fprintln(os.Stderr, "chaos: some clients did not stop within 15 s")
	}
}

// quiesce waits (up to 30 s) until every connection is joined, gives the
// last messages 2 s, reads each room's final position with a probe, and
// waits (up to 20 s) until every client has caught up with it.
func (r *chaosRun) quiesce(ctx context.Context) map[string]roomEnd {
	if !waitUntil(ctx, 30*time.Second, r.allJoined) {
		fmt.Fprintf(os.Stderr, "chaos: %d of %d connections joined at the end\n", r.joinedCount(), len(r.clients))
	}
	sleepCtx(ctx, 2*time.Second)
	ends, err := probeEnds(ctx, r.url, r.rooms)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: final positions:", err)
	}
	behind := func() int {
		n := 0
		for _, cl := range r.clients {
			if end := ends[cl.room]; end.Known && !cl.caughtUp(end) {
				n++
			}
		}
		return n
	}
	if !waitUntil(ctx, 20*time.Second, func() bool { return behind() == 0 }) {
		fmt.Fprintf(os.Stderr, "chaos: %d connections behind their room's final offset after 20 s\n", behind())
	}
	return ends
}
