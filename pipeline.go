package realtime

import (
	"context"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// pipeline hands client messages and events to the Broadcaster off the
// socket workers, so that nothing that waits on the network (Redis) runs on
// them: a stalled Redis slows no ping, join or local delivery.
//
// Messages go to one of several lanes by their room (or a direct message's
// target), so messages to one room keep their order, whoever sends them.
// Each lane has a bounded queue and one goroutine, which sends what has
// queued up as one batch (a Relayer pipelines it in one round trip). When a
// lane's queue is full the sender gets publish_failed at once; a batch that
// fails (Redis down, or PublishTimeout passed) is reported to each sender.
//
// All methods may be called concurrently.
type pipeline struct {
	h       *Handler
	relayer Relayer // the Broadcaster's, or nil: then Publish, one at a time

	mu     sync.RWMutex // guards closed against submit
	closed bool
	lanes  []chan pubJob
	order  []sync.Mutex // per lane: local delivery and queueing in one order
	wg     sync.WaitGroup

	// base bounds every send; close cancels it once its own deadline
	// passes, so that no lane outlives Shutdown.
	base   context.Context
	cancel context.CancelFunc
}

// pubJob is one message for the other pods, and the connection to tell if
// it cannot be sent (nil: nobody to tell).
type pubJob struct {
	f    *Frame
	from *conn
}

// maxBatch bounds what one lane sends at once.
const maxBatch = 128

// pipelineLanes is how many lanes a pipeline has: enough that a slow room
// holds up few others, few enough that each batches.
func pipelineLanes() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

func newPipeline(h *Handler) *pipeline {
	p := &pipeline{h: h}
	p.relayer, _ = h.cfg.Broadcaster.(Relayer)
	p.base, p.cancel = context.WithCancel(context.Background())
	n := pipelineLanes()
	p.lanes = make([]chan pubJob, n)
	p.order = make([]sync.Mutex, n)
	for i := range p.lanes {
		p.lanes[i] = make(chan pubJob, max(1, h.cfg.PublishQueueSize/n))
		p.wg.Go(func() { p.run(p.lanes[i]) })
	}
	return p
}

// submit runs local (the delivery to this pod's members, or nil) and queues
// job on the lane of key, both under the lane's order lock: two senders to
// one room reach this pod's members and the other pods in the same order.
// It reports false if the lane is full or the pipeline is closed.
func (p *pipeline) submit(key string, job pubJob, local func()) bool {
	i := xxhash.Sum64String(key) % uint64(len(p.lanes))
	p.order[i].Lock()
	defer p.order[i].Unlock()
	if local != nil {
		local()
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	select {
	case p.lanes[i] <- job:
		return true
	default:
		return false
	}
}

// close stops taking jobs and lets the lanes send what they hold until ctx
// ends; then it cancels what is still being sent (reported as failed) and
// waits for the lanes, which no longer wait on anything.
func (p *pipeline) close(ctx context.Context) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, q := range p.lanes {
			close(q)
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.cancel()
		<-done
	}
	p.cancel()
}

// run is a lane: it takes what has queued, up to maxBatch, and sends it.
func (p *pipeline) run(q chan pubJob) {
	jobs := make([]pubJob, 0, maxBatch)
	frames := make([]*Frame, 0, maxBatch)
	errs := make([]error, maxBatch)
	for job := range q {
		jobs = append(jobs[:0], job)
	more:
		for len(jobs) < maxBatch {
			select {
			case j, ok := <-q:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		frames = frames[:0]
		for _, j := range jobs {
			frames = append(frames, j.f)
		}
		clear(errs) // a Relayer need only set the errors of what failed
		p.send(frames, errs[:len(frames)])
		for i, err := range errs[:len(frames)] {
			if err != nil {
				p.h.publishFailed(jobs[i].from, frames[i].Message(), err)
			}
		}
		clear(jobs)
		clear(frames)
	}
}

// send hands frames to the Broadcaster within PublishTimeout.
func (p *pipeline) send(frames []*Frame, errs []error) {
	ctx, cancel := context.WithTimeout(p.base, p.h.cfg.PublishTimeout)
	defer cancel()
	if p.relayer != nil {
		p.relayer.Relay(ctx, frames, errs)
		return
	}
	for i, f := range frames {
		errs[i] = p.h.cfg.Broadcaster.Publish(ctx, f.Message())
	}
}
