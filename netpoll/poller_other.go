//go:build !linux

package netpoll

import (
	"net"
	"time"
)

// Supported reports whether this build polls descriptors (Linux epoll).
const Supported = false

// Event is the readiness a Poller reports for a descriptor.
//
// It is a plain value.
type Event uint32

// Readiness bits (see the Linux build).
const (
	Readable Event = 1 << iota
	Writable
	Hangup
	Closed
)

// Callback receives a descriptor's readiness.
type Callback func(Event)

// Poller is unavailable on this platform: New fails with ErrNotPollable.
type Poller struct{}

// New fails: this build cannot poll.
func New(int, func(error)) (*Poller, error) { return nil, ErrNotPollable }

// Add fails: this build cannot poll.
func (*Poller) Add(int, Callback) error { return ErrNotPollable }

// Arm fails: this build cannot poll.
func (*Poller) Arm(int, bool) error { return ErrNotPollable }

// Del fails: this build cannot poll.
func (*Poller) Del(int) error { return ErrNotPollable }

// Close does nothing.
func (*Poller) Close() error { return nil }

// DupFD fails: connections are driven by goroutines on this platform.
func DupFD(net.Conn) (int, error) { return -1, ErrNotPollable }

// Read fails: this build cannot poll.
func Read(int, []byte) (int, error) { return 0, ErrNotPollable }

// Writev fails: this build cannot poll.
func Writev(int, [][]byte) (int, error) { return 0, ErrNotPollable }

// ShutdownWrite fails: this build cannot poll.
func ShutdownWrite(int) error { return ErrNotPollable }

// Close fails: this build cannot poll.
func Close(int) error { return ErrNotPollable }

// Acceptor is unavailable on this platform: NewAcceptor fails.
type Acceptor struct{}

// NewAcceptor fails with ErrNotPollable: accept with the listener instead.
func NewAcceptor(net.Listener) (*Acceptor, error) { return nil, ErrNotPollable }

// Accept fails: this build cannot poll.
func (*Acceptor) Accept() (int, string, error) { return -1, "", ErrNotPollable }

// DeferAccept fails: this build cannot poll.
func (*Acceptor) DeferAccept(time.Duration) error { return ErrNotPollable }

// Close does nothing.
func (*Acceptor) Close() error { return nil }
