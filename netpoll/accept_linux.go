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
// It accepts on the listener's own descriptor (through its RawConn, so the
// descriptor stays valid while it does) and, between connections, waits
// until an epoll instance of its own, holding the listener, is readable:
// that instance is what Go's poller waits on (it cannot wait for a raw
// accept on the listener), with no thread blocked in a system call, and an
// epoll registration, unlike a duplicate descriptor or poll(2), does not
// keep a closed socket open. Closing the listener frees its port at once; a
// waiting Accept notices within its check interval (100 ms). Accept may be
// called from one goroutine at a time; Close from any, more than once.
type Acceptor struct {
	orig  syscall.RawConn // the listener's
	ep    *os.File        // the epoll instance, in Go's poller
	rc    syscall.RawConn // ep's
	check time.Duration   // the longest a wait lasts before Accept looks whether the listener was closed

	closed atomic.Bool
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
	ep, err := listenerEpoll(orig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	a := &Acceptor{orig: orig, ep: ep, rc: rc, check: 100 * time.Millisecond}
	// A deadline fails when Go's poller did not take the epoll descriptor
	// (no nested epoll, or no watches left): then waits would fail too.
	if err := ep.SetReadDeadline(time.Now().Add(a.check)); err != nil {
		ep.Close()
		return nil, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	return a, nil
}

// listenerEpoll sets TCP_NODELAY on the listening socket (accepted sockets
// inherit it: once here spares the setsockopt Go's Accept makes per
// connection) and returns a non-blocking epoll instance holding it, as a
// file in Go's poller.
func listenerEpoll(orig syscall.RawConn) (*os.File, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	var opErr error
	if err := orig.Control(func(fd uintptr) {
		if opErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); opErr == nil {
			opErr = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
		}
	}); err != nil || opErr != nil {
		unix.Close(ep)
		return nil, errors.Join(err, opErr)
	}
	if err := unix.SetNonblock(ep, true); err != nil { // so that os.NewFile puts it in Go's poller
		unix.Close(ep)
		return nil, err
	}
	return os.NewFile(uintptr(ep), "acceptor-epoll"), nil
}

// Accept waits for the next connection and returns its descriptor, which the
// caller owns and must close, and the peer's address as net.TCPAddr.String
// formats it. Errors are net.ErrClosed once the listener or the Acceptor is
// closed, or accept4's (EMFILE and the like; a connection aborted before it
// was accepted is skipped).
func (a *Acceptor) Accept() (int, string, error) {
	var (
		fd  = -1
		sa  unix.Sockaddr
		err error
	)
	for {
		if a.closed.Load() {
			return -1, "", net.ErrClosed
		}
		rerr := a.rc.Read(func(ep uintptr) bool {
			fd, sa, err = a.acceptNow()
			if err != unix.EAGAIN {
				return true
			}
			var evs [1]unix.EpollEvent // take the ready event: the instance reads as ready again only when a connection comes
			unix.EpollWait(int(ep), evs[:], 0)
			return false
		})
		switch {
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			a.ep.SetReadDeadline(time.Now().Add(a.check))
			if a.orig.Control(func(uintptr) {}) != nil {
				return -1, "", net.ErrClosed // the listener was closed
			}
			continue
		case rerr != nil && a.closed.Load():
			return -1, "", net.ErrClosed
		case rerr != nil:
			return -1, "", fmt.Errorf("netpoll: accept wait: %w", rerr)
		case err != nil:
			return -1, "", err
		}
		return fd, sockaddrString(sa), nil
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
	if a.closed.Swap(true) {
		return nil
	}
	return a.ep.Close()
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
