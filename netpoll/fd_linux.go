//go:build linux

package netpoll

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DupFD returns a non-blocking, close-on-exec duplicate of c's socket
// descriptor, which the caller owns and must close. The caller should then
// close c: the duplicate keeps the socket open.
//
// It uses SyscallConn().Control, never (*net.TCPConn).File, whose descriptor
// switches the shared socket to blocking mode.
func DupFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, ErrNotPollable
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("%w: %v", ErrNotPollable, err)
	}
	nfd := -1
	var dupErr error
	if err := raw.Control(func(fd uintptr) {
		nfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("netpoll: dup: %w", err)
	}
	if dupErr != nil {
		return -1, fmt.Errorf("netpoll: dup: %w", dupErr)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, fmt.Errorf("netpoll: set non-blocking: %w", err)
	}
	return nfd, nil
}

// Read reads from fd without blocking. It returns ErrWouldBlock when nothing
// is available and io.EOF-like (0, nil) is mapped to (0, ErrEOF).
//
// It is the syscall package's read (the same system call as x/sys's): under
// the race detector that one orders what the peer wrote before its write,
// when the peer is in this process, before what follows the read.
func Read(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		switch {
		case err == nil && n == 0 && len(p) > 0:
			return 0, ErrEOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, ErrWouldBlock
		default:
			return 0, err
		}
	}
}

// Writev writes bufs to fd with writev without blocking and returns how many
// bytes went out. A partial write returns the count and nil; nothing written
// because the socket buffer is full returns ErrWouldBlock. It allocates
// nothing (unix.Writev allocates its iovecs past eight buffers): it runs once
// per recipient of a fan-out.
func Writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) > MaxIOV {
		bufs = bufs[:MaxIOV]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	var small [8]unix.Iovec
	if len(bufs) <= len(small) {
		return writeIOV(fd, fillIOV(small[:0], bufs))
	}
	p := iovPool.Get().(*[]unix.Iovec)
	iov := fillIOV((*p)[:0], bufs)
	n, err := writeIOV(fd, iov)
	clear(iov) // no frame stays reachable from the pool
	iovPool.Put(p)
	return n, err
}

// fillIOV appends an iovec for each of bufs to iov.
func fillIOV(iov []unix.Iovec, bufs [][]byte) []unix.Iovec {
	for _, b := range bufs {
		var v unix.Iovec
		if len(b) > 0 {
			v.Base = &b[0]
			v.SetLen(len(b))
		}
		iov = append(iov, v)
	}
	return iov
}

// writeIOV is writev(2) of iov, which is not empty.
func writeIOV(fd int, iov []unix.Iovec) (int, error) {
	for {
		n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, ErrWouldBlock
		default:
			return 0, errno
		}
	}
}

// iovPool holds iovec arrays for writes of more than eight buffers.
var iovPool = sync.Pool{New: func() any { v := make([]unix.Iovec, 0, MaxIOV); return &v }}

// ShutdownWrite half-closes fd: the peer reads EOF after what was sent.
func ShutdownWrite(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) }

// Close closes fd.
func Close(fd int) error { return unix.Close(fd) }
