//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"sync"

	easy "github.com/mailru/easygo/netpoll"
)

// Supported reports whether this build polls descriptors (Linux epoll).
const Supported = true

// Event is the readiness a Poller reports for a descriptor.
type Event uint32

// Readiness bits. A callback may get several at once.
const (
	Readable Event = 1 << iota
	Writable
	// Hangup: the peer closed or the socket failed; a read tells which.
	Hangup
	// Closed: the Poller itself was closed; the descriptor will get no more
	// events.
	Closed
)

// Callback receives a descriptor's readiness. It runs on the Poller's
// dispatch goroutine, which serves many descriptors: it must only hand work
// off (to a Pool) and return.
type Callback func(Event)

// Poller is a set of epoll instances. Each descriptor belongs to one of them,
// picked by its number. All methods may be called concurrently.
type Poller struct {
	eps    []*easy.Epoll
	mu     sync.Mutex
	closed bool
}

// New starts a Poller with n epoll instances (n < 1 means 1), each with one
// dispatch goroutine. onError receives errors of epoll_wait that are not
// EINTR (easygo retries EINTR itself); nil logs nothing.
func New(n int, onError func(error)) (*Poller, error) {
	if n < 1 {
		n = 1
	}
	if onError == nil {
		onError = func(error) {}
	}
	p := &Poller{}
	for range n {
		ep, err := easy.EpollCreate(&easy.EpollConfig{OnWaitError: onError})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("netpoll: create epoll: %w", err)
		}
		p.eps = append(p.eps, ep)
	}
	return p, nil
}

func (p *Poller) epoll(fd int) *easy.Epoll { return p.eps[fd%len(p.eps)] }

const (
	oneShotRead  = easy.EPOLLIN | easy.EPOLLRDHUP | easy.EPOLLONESHOT
	oneShotWrite = easy.EPOLLOUT | easy.EPOLLONESHOT
)

// Add registers fd, armed for reading (one-shot). cb gets its events.
func (p *Poller) Add(fd int, cb Callback) error {
	err := p.epoll(fd).Add(fd, oneShotRead, func(ev easy.EpollEvent) { cb(translate(ev)) })
	if err != nil {
		return fmt.Errorf("netpoll: add fd %d: %w", fd, mapErr(err))
	}
	return nil
}

// Arm re-arms fd (one-shot) for reading, and for writing too if write is set.
// Call it after handling an event: until then fd reports nothing.
func (p *Poller) Arm(fd int, write bool) error {
	ev := easy.EpollEvent(oneShotRead)
	if write {
		ev |= oneShotWrite
	}
	if err := p.epoll(fd).Mod(fd, ev); err != nil {
		return fmt.Errorf("netpoll: arm fd %d: %w", fd, mapErr(err))
	}
	return nil
}

// Del removes fd. Its callback may still run once afterwards (an event already
// taken by the dispatch goroutine): callers guard their state.
func (p *Poller) Del(fd int) error {
	if err := p.epoll(fd).Del(fd); err != nil {
		return fmt.Errorf("netpoll: del fd %d: %w", fd, mapErr(err))
	}
	return nil
}

// Close stops every dispatch goroutine, calling each remaining descriptor's
// callback with Closed. It does not close the descriptors.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, ep := range p.eps {
		if err := ep.Close(); err != nil && !errors.Is(err, easy.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func translate(ev easy.EpollEvent) Event {
	var e Event
	if ev&0x20 != 0 { // easygo's private _EPOLLCLOSED
		e |= Closed
	}
	if ev&(easy.EPOLLIN|easy.EPOLLPRI) != 0 {
		e |= Readable
	}
	if ev&easy.EPOLLOUT != 0 {
		e |= Writable
	}
	if ev&(easy.EPOLLHUP|easy.EPOLLRDHUP|easy.EPOLLERR) != 0 {
		e |= Hangup | Readable // a read reports EOF or the error
	}
	return e
}

func mapErr(err error) error {
	if errors.Is(err, easy.ErrClosed) {
		return ErrClosed
	}
	return err
}
