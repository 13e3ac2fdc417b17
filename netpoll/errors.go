package netpoll

import "errors"

// Errors of the descriptor helpers and the Poller.
var (
	// ErrWouldBlock: the operation would block (EAGAIN); wait for readiness.
	ErrWouldBlock = errors.New("netpoll: would block")
	// ErrEOF: the peer closed its side of the connection.
	ErrEOF = errors.New("netpoll: end of stream")
	// ErrNotPollable: the connection has no descriptor this package can own
	// (TLS, a pipe, a wrapped conn, a non-Linux build): drive it with a
	// goroutine instead.
	ErrNotPollable = errors.New("netpoll: connection cannot be polled")
	// ErrClosed is returned by a Poller that was closed.
	ErrClosed = errors.New("netpoll: poller closed")
)

// MaxIOV is the most buffers one Writev sends (Linux IOV_MAX).
const MaxIOV = 1024
