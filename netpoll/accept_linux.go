//go:build linux

package netpoll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
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
// It accepts on the listener's own descriptor (through its RawConn, so the
// descriptor stays valid while it does) and, between connections, waits for
// it or for Close in an epoll instance of its own (the listener's poller
// cannot wait for a raw accept; an epoll registration, unlike poll(2), does
// not keep a closed socket open). Closing the listener frees its port at
// once; a waiting Accept notices within its check interval (100 ms).
// Accept may be called from one goroutine at a time; Close from any, more
// than once.
type Acceptor struct {
	orig  syscall.RawConn // the listener's
	check time.Duration   // the longest a wait lasts before Accept looks whether the listener was closed

	mu        sync.Mutex
	ep, wake  int  // the epoll instance, and the eventfd Close writes to end a wait; -1 once closed
	closed    bool // Close was called
	accepting bool // an Accept is running: it closes ep and wake when it sees closed
}

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
	a := &Acceptor{orig: orig, check: 100 * time.Millisecond, ep: -1, wake: -1}
	if err := a.setUp(); err != nil {
		a.release()
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	return a, nil
}

// setUp sets TCP_NODELAY on the listening socket (accepted sockets inherit
// it: once here spares the setsockopt Go's Accept makes per connection),
// and makes the epoll instance that waits for the listener and wake.
func (a *Acceptor) setUp() error {
	var err error
	if a.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	if a.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if err = unix.EpollCtl(a.ep, unix.EPOLL_CTL_ADD, a.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(a.wake)}); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	var optErr error
	if err := a.orig.Control(func(fd uintptr) {
		if optErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); optErr == nil {
			optErr = unix.EpollCtl(a.ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
		}
	}); err != nil || optErr != nil {
		return errors.Join(err, optErr)
	}
	return nil
}

// release closes the epoll instance and the eventfd; under mu, or before
// the Acceptor is shared.
func (a *Acceptor) release() {
	if a.ep >= 0 {
		unix.Close(a.ep)
	}
	if a.wake >= 0 {
		unix.Close(a.wake)
	}
	a.ep, a.wake = -1, -1
}

// Accept waits for the next connection and returns its descriptor, which the
// caller owns and must close, and the peer's address as net.TCPAddr.String
// formats it. Errors are net.ErrClosed once the listener or the Acceptor is
// closed, or accept4's (EMFILE and the like; a connection aborted before it
// was accepted is skipped).
func (a *Acceptor) Accept() (int, string, error) {
	ep, ok := a.enter()
	if !ok {
		return -1, "", net.ErrClosed
	}
	defer a.leave()
	for {
		fd, sa, err := a.acceptNow()
		if err != unix.EAGAIN {
			if err != nil {
				return -1, "", err
			}
			return fd, sockaddrString(sa), nil
		}
		var evs [2]unix.EpollEvent // EINTR, or the check interval passed: Accept looks again
		unix.EpollWait(ep, evs[:], int(a.check/time.Millisecond))
		if a.isClosed() {
			return -1, "", net.ErrClosed
		}
	}
}

// acceptNow is accept4 on the listener, which must not block; net.ErrClosed
// when the listener was closed.
func (a *Acceptor) acceptNow() (fd int, sa unix.Sockaddr, err error) {
	cerr := a.orig.Control(func(lfd uintptr) {
		for {
			fd, sa, err = unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != unix.EINTR && err != unix.ECONNABORTED {
				return
			}
		}
	})
	if cerr != nil {
		return -1, nil, net.ErrClosed
	}
	return fd, sa, err
}

func (a *Acceptor) enter() (ep int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return -1, false
	}
	a.accepting = true
	return a.ep, true
}

func (a *Acceptor) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accepting = false
	if a.closed {
		a.release()
	}
}

func (a *Acceptor) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// DeferAccept asks the kernel to hand over a connection only once its first
// bytes have arrived (TCP_DEFER_ACCEPT), waiting up to about d (rounded up to
// seconds) for them: the client of a protocol where it speaks first (an
// HTTP upgrade) then usually has its whole request waiting when Accept
// returns. A connection with nothing sent by then is handed over anyway.
// The option stays on the listening socket.
func (a *Acceptor) DeferAccept(d time.Duration) error {
	secs := int((d + time.Second - 1) / time.Second)
	var err error
	if cerr := a.orig.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, max(secs, 1))
	}); cerr != nil {
		return cerr
	}
	return err
}

// Close ends a waiting Accept at once, and every later one; the listener
// stays open (it is the caller's).
func (a *Acceptor) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	if a.accepting {
		var one [8]byte // an eventfd adds the native-endian uint64 written
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(a.wake, one[:])
		return nil // Accept releases them as it leaves
	}
	a.release()
	return nil
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
