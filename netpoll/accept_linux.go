//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Acceptor accepts connections from a TCP listener as bare descriptors:
// non-blocking, close-on-exec, never registered with Go's own poller. A
// connection that ends up in a Poller then costs no registration with the
// runtime's netpoller, no duplicate descriptor and no close of the original
// (five system calls per connect, and a net.TCPConn).
//
// Accepted sockets have TCP_NODELAY, as Go's own Accept gives them, and no
// TCP keep-alive (the listener's KeepAlive setting applies to its own
// Accept only).
//
// It accepts from a duplicate of the listener's descriptor (Go's listener
// cannot wait on a raw accept). Closing the listener does not close the
// duplicate: Accept notices it within closeCheck, and Close ends a waiting
// Accept at once. Accept may be called from one goroutine at a time; Close
// from any.
type Acceptor struct {
	orig syscall.RawConn // the listener's own descriptor: closed when the listener is
	file *os.File        // the duplicate accepted from
	rc   syscall.RawConn // file's

	closed atomic.Bool
}

// closeCheck is how often an idle Accept checks whether the listener was
// closed.
const closeCheck = 100 * time.Millisecond

// NewAcceptor returns an Acceptor for ln, or ErrNotPollable when ln is not
// a *net.TCPListener (its connections must then come from ln.Accept).
func NewAcceptor(ln net.Listener) (*Acceptor, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, ErrNotPollable
	}
	orig, err := tl.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	// Accepted sockets inherit TCP_NODELAY from the listening one: set once
	// here, it spares the setsockopt Go's Accept makes per connection.
	var optErr error
	if err := orig.Control(func(fd uintptr) {
		optErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}); err != nil || optErr != nil {
		return nil, fmt.Errorf("%w: TCP_NODELAY: %v", ErrNotPollable, errors.Join(err, optErr))
	}
	f, err := tl.File()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	f.SetReadDeadline(time.Now().Add(closeCheck))
	return &Acceptor{orig: orig, file: f, rc: rc}, nil
}

// Accept waits for the next connection and returns its descriptor, which the
// caller owns and must close, and the peer's address as net.TCPAddr.String
// formats it. Errors are net.ErrClosed once the listener or the Acceptor is
// closed, or accept4's (EMFILE and the like; a connection aborted before it
// was accepted is skipped).
func (a *Acceptor) Accept() (int, string, error) {
	var (
		fd     = -1
		sa     unix.Sockaddr
		accErr error
	)
	accept := func(lfd uintptr) bool {
		for {
			fd, sa, accErr = unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch accErr {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EAGAIN:
				return false // wait until the listener is readable
			}
			return true
		}
	}
	for {
		if a.orig.Control(func(uintptr) {}) != nil {
			return -1, "", net.ErrClosed // the listener was closed
		}
		err := a.rc.Read(accept)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			a.file.SetReadDeadline(time.Now().Add(closeCheck))
			continue
		}
		if err != nil && a.closed.Load() {
			return -1, "", net.ErrClosed
		}
		if err != nil {
			return -1, "", err
		}
		if accErr != nil {
			return -1, "", accErr
		}
		return fd, sockaddrString(sa), nil
	}
}

// DeferAccept asks the kernel to hand over a connection only once its first
// bytes have arrived (TCP_DEFER_ACCEPT), waiting up to about d (rounded up to
// seconds) for them: the client of a protocol where it speaks first (an
// HTTP upgrade) then usually has its whole request waiting when Accept
// returns. A connection with nothing sent by then is handed over anyway.
func (a *Acceptor) DeferAccept(d time.Duration) error {
	secs := int((d + time.Second - 1) / time.Second)
	var err error
	if cerr := a.rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, max(secs, 1))
	}); cerr != nil {
		return cerr
	}
	return err
}

// Close closes the duplicate descriptor (not the listener): a waiting Accept
// returns net.ErrClosed.
func (a *Acceptor) Close() error {
	a.closed.Store(true)
	return a.file.Close()
}

// sockaddrString formats sa as net.TCPAddr.String does ("1.2.3.4:80",
// "[::1]:80"; an IPv4-mapped IPv6 address as its IPv4 form).
func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		addr := &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				addr.Zone = ifi.Name
			} else {
				addr.Zone = strconv.Itoa(int(sa.ZoneId))
			}
		}
		return addr.String()
	}
	return ""
}
