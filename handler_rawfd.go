package realtime

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/realtimehub/realtime/netpoll"
)

// peekSize is how much of a handshake serveRawFD reads at once: a request
// head up to this size that has all arrived is upgraded without blocking.
const peekSize = 4096

// peekBufs holds serveRawFD's read buffers.
var peekBufs = sync.Pool{New: func() any { return new([peekSize]byte) }}

// serveRawFD does the raw door's handshake on a descriptor the Acceptor gave.
// A client sends its request as soon as it is connected, so the head is
// usually there by now: then it is upgraded from what one read returned,
// with nothing that can block (no deadline, no net.Conn), and the descriptor
// goes straight to epoll. Otherwise (a slow or partial request) the
// descriptor becomes a net.Conn and the handshake goes on as for other
// listeners, under HandshakeTimeout.
func (h *Handler) serveRawFD(fd int, remote string) {
	defer h.eng.handshakes.Done()
	if h.eng.stopping.Load() {
		netpoll.Close(fd)
		return
	}
	buf := peekBufs.Get().(*[peekSize]byte)
	n, err := netpoll.Read(fd, buf[:])
	switch {
	case err == netpoll.ErrWouldBlock:
		n = 0
	case err != nil: // gone before it asked anything
		peekBufs.Put(buf)
		netpoll.Close(fd)
		return
	}
	end := bytes.Index(buf[:n], crlf2)
	if end < 0 {
		pre := bytes.Clone(buf[:n])
		peekBufs.Put(buf) // not held for as long as the client takes
		h.waitForHead(fd, remote, pre)
		return
	}
	defer peekBufs.Put(buf)
	// What follows the head are the client's first frames; attach reads
	// them before buf goes back to the pool.
	head, early := buf[:end+4], buf[end+4:n]
	rec := &recorder{pre: head}
	hs, err := h.upgradeRaw(rec, remote)
	if err != nil {
		writeAndClose(fd, rec.out)
		return
	}
	if hs.tryLater {
		writeAndClose(fd, append(rec.out, tryLaterFrame()...))
		return
	}
	h.attachSocket(nil, fd, hs.id, early, rec.out) // the 101 leaves with the greeting
}

// waitForHead goes on with a handshake whose head was not all there (pre is
// what was): the blocking way, as a net.Conn, under HandshakeTimeout.
func (h *Handler) waitForHead(fd int, remote string, pre []byte) {
	if hook := h.eng.rawHandshakeWaits.Load(); hook != nil {
		(*hook)()
	}
	nc, err := fdConn(fd)
	if err != nil {
		h.logger.Error("realtime: raw handshake", "remote", remote, "err", err)
		return
	}
	h.handshakeConn(nc, pre, remote)
}

// writeAndClose writes b to fd, as much as the socket takes without waiting
// (a refusal or a close frame on a fresh socket: all of it), and closes fd.
func writeAndClose(fd int, b []byte) {
	if len(b) > 0 {
		netpoll.Writev(fd, [][]byte{b})
	}
	netpoll.Close(fd)
}

// fdConn turns a descriptor into a net.Conn (a duplicate, registered with
// Go's poller) and closes the descriptor, whatever happens.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	if f == nil {
		netpoll.Close(fd)
		return nil, fmt.Errorf("realtime: descriptor %d: %w", fd, os.ErrInvalid)
	}
	defer f.Close()
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("realtime: descriptor %d: %w", fd, err)
	}
	return nc, nil
}
