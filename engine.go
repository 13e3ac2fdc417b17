package realtime

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
	"github.com/realtimehub/realtime/netpoll"
)

// engine is what a Handler runs: the epoll poller, the worker pool, the
// heartbeat wheel and the fallback readers. It starts with the first
// connection, so a Handler that serves nobody runs no goroutine.
type engine struct {
	h *Handler

	startOnce sync.Once
	poller    *netpoll.Poller // nil where polling is unsupported
	pool      *netpoll.Pool
	pipe      *pipeline      // messages for the Broadcaster, or nil without one
	cmds      *commandRunner // commands off the workers, or nil without hooks
	events    *roomEvents    // big rooms' members_diff, or nil with events off
	batches   *eventBatches  // small rooms' events of a window, or nil with events off
	hb        heartbeat
	stopHB    chan struct{}
	hbDone    sync.WaitGroup

	stopping   atomic.Bool
	live       atomic.Int64   // attached connections not yet torn down
	idle       chan struct{}  // signalled when live drops to 0
	fallback   sync.WaitGroup // reader goroutines
	handshakes sync.WaitGroup // handshakes and upgrades in progress, both doors
	done       chan struct{}  // closed when shutdown finished

	// afterRegister, when a test sets it, runs right after a connection's
	// descriptor is registered with epoll, to widen a race window on purpose.
	afterRegister func()
	// beforeRegister, when a test sets it, runs in attach between its check
	// that the handler is not stopping and the connection's registration.
	beforeRegister func()
	// rawHandshakeWaits, when a test sets it, runs when a raw handshake's
	// head was not all there at once and the handshake goes on blocking.
	// Atomic: the raw door's reads and writes are not seen by the race
	// detector as ordering the test's setting of it.
	rawHandshakeWaits atomic.Pointer[func()]
}

func newEngine(h *Handler) *engine {
	return &engine{h: h, stopHB: make(chan struct{}), idle: make(chan struct{}, 1), done: make(chan struct{})}
}

// start starts the engine once. Without epoll (or when it cannot be
// created) connections fall back to a goroutine each, so start cannot fail.
func (e *engine) start() {
	e.startOnce.Do(func() {
		if netpoll.Supported {
			p, err := netpoll.New(e.h.cfg.Pollers, func(err error) {
				e.h.logger.Error("realtime: epoll wait", "err", err)
			})
			if err != nil {
				e.h.logger.Warn("realtime: epoll unavailable; one goroutine per connection", "err", err)
			} else {
				e.poller = p
			}
		}
		e.pool = netpoll.NewPool(e.h.cfg.Workers)
		if e.h.cfg.Broadcaster != nil {
			e.pipe = newPipeline(e.h)
		}
		if !e.h.cfg.DisableJoinLeaveEvents {
			e.events = newRoomEvents(e.h)
		}
		e.batches = newEventBatches(e.h) // after the pipeline: it asks whether it relays
		if e.h.cfg.hasCommandHooks() {
			e.cmds = newCommandRunner(e.h)
		}
		e.hbDone.Go(func() { e.hb.run(&e.h.cfg, e.stopHB) })
	})
}

func (e *engine) signalIdle() {
	select {
	case e.idle <- struct{}{}:
	default:
	}
}

// shutdown closes every connection with 1001, waits for them to finish or
// ctx to end, then stops everything.
func (e *engine) shutdown(ctx context.Context) error {
	defer close(e.done)
	// Handshakes in progress were cut short (cancelHandshakes); an
	// Authenticate hook that does not return is not waited for past ctx.
	waitCtx(ctx, e.handshakes.Wait)
	// A handler that never started has nothing to stop (and now never will).
	e.startOnce.Do(func() {})
	if e.pool == nil {
		return nil
	}
	e.drain(ctx)
	var err error
	for e.live.Load() > 0 && err == nil {
		select {
		case <-e.idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// Whatever is left did not finish its close handshake in time.
	for _, c := range e.hb.all() {
		c.requestTeardown()
	}
	close(e.stopHB)
	e.hbDone.Wait()
	e.pool.Close() // runs the teardowns queued above, then stops
	for _, c := range e.hb.all() {
		c.teardown(nil) // no worker is left: nothing else runs c now
	}
	if e.poller != nil {
		e.poller.Close()
	}
	e.fallback.Wait()
	if e.cmds != nil {
		waitCtx(ctx, e.cmds.stop) // a hook that does not return keeps its goroutine
	}
	if e.events != nil {
		e.batches.close() // the last events and diffs go out before the pipeline closes
		e.events.close()
	}
	if e.pipe != nil {
		// What the connections' last events queued still goes out, until
		// ctx ends; then what is left is cancelled.
		e.pipe.close(ctx)
	}
	if err != nil {
		return ErrShutdownTimeout
	}
	return nil
}

// dupFD returns an owned, non-blocking duplicate of nc's descriptor, or an
// error for connections that cannot be polled (TLS has no syscall.Conn).
func dupFD(nc net.Conn) (int, error) {
	if _, ok := nc.(syscall.Conn); !ok {
		return -1, netpoll.ErrNotPollable
	}
	return netpoll.DupFD(nc)
}

// isPeerGone reports errors that only mean the peer went away.
func isPeerGone(err error) bool {
	return errors.Is(err, netpoll.ErrEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// drainTick is how often the drain closes its next batch.
const drainTick = 100 * time.Millisecond

// drain closes every connection with 1001, DrainRate per second (faster if
// that would take longer than DrainWindow), each close carrying a reconnect
// hint, so that the pods taking the clients over see a ramp, not a cliff.
// When ctx ends, the rest are closed at once.
func (e *engine) drain(ctx context.Context) {
	conns := e.hb.all()
	cfg := &e.h.cfg
	rate := max(cfg.DrainRate, float64(len(conns))/cfg.DrainWindow.Seconds())
	batch := max(1, int(rate*drainTick.Seconds()))
	t := time.NewTicker(drainTick)
	defer t.Stop()
	for i := 0; i < len(conns); i += batch {
		if i > 0 {
			select {
			case <-t.C:
			case <-ctx.Done():
				batch = len(conns)
			}
		}
		for _, c := range conns[i:min(i+batch, len(conns))] {
			c.fail(wsframe.CloseGoingAway, reconnectHint())
		}
	}
}

// reconnectHint is the reason of a drain's close frame: the delay the client
// should wait before reconnecting, drawn from [0, 1 s) so that a batch comes
// back spread out ("server shutting down; reconnect_ms=NNN"; realtime.js
// reads it).
func reconnectHint() string {
	return "server shutting down; reconnect_ms=" + strconv.Itoa(rand.IntN(1000))
}

// waitCtx runs wait and returns when it does or when ctx ends.
func waitCtx(ctx context.Context, wait func()) {
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
