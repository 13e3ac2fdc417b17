package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"
)

// faultRec is one injected fault: what, on what, and when (ms since the
// run's start). Settled is when every connection was joined again (-1: not
// before the next fault).
type faultRec struct {
	Kind      string    `json:"kind"`
	Target    string    `json:"target"`
	Detail    string    `json:"detail,omitempty"`
	Err       string    `json:"error,omitempty"`
	Start     time.Time `json:"-"`
	StartMs   float64   `json:"start_ms"`
	EndMs     float64   `json:"end_ms"`
	SettledMs float64   `json:"settled_ms"`
}

// injectFaults injects faultsPerKind faults of each kind, in turn, at even
// intervals over the chaos duration, and returns them. A fault that runs
// past its slot delays the next one; none starts past the duration's end
// plus its slot.
func (r *chaosRun) injectFaults(ctx context.Context, kinds []string) []faultRec {
	n := r.cfg.faultsPerKind * len(kinds)
	if n == 0 {
		sleepCtx(ctx, r.cfg.duration)
		return nil
	}
	slot := r.cfg.duration / time.Duration(n)
	start := time.Now()
	var faults []faultRec
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if !sleepCtx(ctx, time.Until(start.Add(time.Duration(i)*slot))) {
			break
		}
		kind := kinds[i%len(kinds)]
		f := faultRec{Kind: kind, Start: time.Now(), StartMs: r.since(time.Now())}
		if err := r.inject(ctx, &f, i/len(kinds)); err != nil {
			f.Err = err.Error()
		}
		f.EndMs = r.since(time.Now())
		f.SettledMs = -1
		next := start.Add(time.Duration(i+1) * slot)
		if waitUntil(ctx, time.Until(next), r.allJoined) {
			f.SettledMs = r.since(time.Now())
		}
		fmt.Fprintf(os.Stderr, "chaos: %6.1fs %-13s %-8s %s  (%.0f ms, all joined after %.0f ms) %s\n",
			f.StartMs/1000, f.Kind, f.Target, f.Detail, f.EndMs-f.StartMs, f.SettledMs-f.StartMs, f.Err)
		faults = append(faults, f)
	}
	return faults
}

// inject carries out fault f; nth is how many of its kind came before.
func (r *chaosRun) inject(ctx context.Context, f *faultRec, nth int) error {
	switch f.Kind {
	case faultPodKill:
		p := r.pods[nth%len(r.pods)]
		f.Target = fmt.Sprintf("pod%d", p.idx)
		p.kill()
		sleepCtx(ctx, r.cfg.down)
		return p.start(ctx)
	case faultPubsubKill:
		f.Target = "redis"
		n, err := killPubsub(r.redis.addr)
		f.Detail = fmt.Sprintf("%d pub/sub clients killed", n)
		return err
	case faultRedisRestart:
		f.Target = "redis"
		err := r.redis.shutdown()
		sleepCtx(ctx, r.cfg.down)
		if err2 := r.redis.start(); err2 != nil {
			return err2
		}
		return err
	case faultClientDrop:
		f.Target = "clients"
		dropped := 0
		for _, i := range rand.Perm(len(r.clients))[:int(float64(len(r.clients))*r.cfg.dropFrac)] {
			if r.clients[i].drop() {
				dropped++
			}
		}
		f.Detail = fmt.Sprintf("%d connections closed", dropped)
	}
	return nil
}

// allJoined reports whether every client's connection is joined.
func (r *chaosRun) allJoined() bool {
	return r.joinedCount() == len(r.clients)
}

func (r *chaosRun) joinedCount() int {
	n := 0
	for _, cl := range r.clients {
		if cl.joined.Load() {
			n++
		}
	}
	return n
}

// since is t in ms since the run's start.
func (r *chaosRun) since(t time.Time) float64 { return ms(t.Sub(r.t0)) }

// faultAt returns the kind of the last fault that started at or before t
// (faults sorted by start), or "before-faults".
func faultAt(t time.Time, faults []faultRec) string {
	i := sort.Search(len(faults), func(i int) bool { return faults[i].Start.After(t) })
	if i == 0 {
		return "before-faults"
	}
	return faults[i-1].Kind
}

// lastEnded describes, for each fault kind, how long before t its last
// fault ended, most recent first: "client-drop +13ms, redis-restart
// +1063ms", or "".
func lastEnded(t, t0 time.Time, faults []faultRec) string {
	at := ms(t.Sub(t0))
	last := map[string]float64{}
	var kinds []string
	for _, f := range faults {
		if f.EndMs > at {
			continue
		}
		if _, ok := last[f.Kind]; !ok {
			kinds = append(kinds, f.Kind)
		}
		last[f.Kind] = max(last[f.Kind], f.EndMs)
	}
	sort.Slice(kinds, func(i, j int) bool { return last[kinds[i]] > last[kinds[j]] })
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s +%.0fms", k, at-last[k]))
	}
	return strings.Join(parts, ", ")
}

// sleepCtx sleeps for d, and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}
