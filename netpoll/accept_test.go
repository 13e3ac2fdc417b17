//go:build linux

package netpoll

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

type accepted struct {
	fd     int
	remote string
	err    error
}

func acceptAsync(a *Acceptor) chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		fd, remote, err := a.Accept()
		ch <- accepted{fd, remote, err}
	}()
	return ch
}

// An accepted descriptor is the connection's, non-blocking, close-on-exec,
// without Nagle's delay, and named by the client's address as net formats
// it.
func TestAcceptorGivesOwnedNonBlockingDescriptors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	a, err := NewAcceptor(ln)
	require.NoError(t, err)
	defer a.Close()
	for range 3 {
		got := acceptAsync(a)
		client, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		r := <-got
		require.NoError(t, r.err)
		assert.Equal(t, client.LocalAddr().String(), r.remote)
		flags, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETFL, 0)
		require.NoError(t, err)
		assert.NotZero(t, flags&unix.O_NONBLOCK, "non-blocking")
		fdFlags, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETFD, 0)
		require.NoError(t, err)
		assert.NotZero(t, fdFlags&unix.FD_CLOEXEC, "close-on-exec")
		nodelay, err := unix.GetsockoptInt(r.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY)
		require.NoError(t, err)
		assert.Equal(t, 1, nodelay, "TCP_NODELAY, as Go's Accept sets it: no Nagle delay on small frames")
		buf := make([]byte, 8)
		_, err = Read(r.fd, buf)
		assert.ErrorIs(t, err, ErrWouldBlock)
		client.Write([]byte("hi"))
		require.Eventually(t, func() bool {
			n, err := Read(r.fd, buf)
			return err == nil && string(buf[:n]) == "hi"
		}, 5*time.Second, 5*time.Millisecond)
		Close(r.fd)
		client.Close()
	}
}

// Closing the listener (as a caller of Handler.Serve may) frees its port at
// once, and ends a waiting Accept.
func TestAcceptorEndsWhenTheListenerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := NewAcceptor(ln)
	require.NoError(t, err)
	defer a.Close()
	got := acceptAsync(a)
	time.Sleep(2 * a.check) // waiting, past a check or two
	ln.Close()
	again, err := net.Listen("tcp", ln.Addr().String())
	require.NoError(t, err, "the port is free as soon as the listener is closed")
	again.Close()
	select {
	case r := <-got:
		assert.ErrorIs(t, r.err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not notice the listener closed")
	}
}

// Close ends a waiting Accept at once, not at its next check; later Accepts
// end too.
func TestAcceptorCloseEndsAccept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	a, err := NewAcceptor(ln)
	require.NoError(t, err)
	a.check = time.Minute
	got := acceptAsync(a)
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, a.Close())
	select {
	case r := <-got:
		assert.ErrorIs(t, r.err, net.ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end Accept")
	}
	_, _, err = a.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.NoError(t, a.Close(), "twice")
}

// Listeners other than TCP are not taken: their connections come from
// their own Accept.
func TestAcceptorRefusesOtherListeners(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	require.NoError(t, err)
	defer ln.Close()
	_, err = NewAcceptor(ln)
	assert.ErrorIs(t, err, ErrNotPollable)
}

func TestSockaddrString(t *testing.T) {
	assert.Equal(t, "10.1.2.3:80", sockaddrString(&unix.SockaddrInet4{Port: 80, Addr: [4]byte{10, 1, 2, 3}}))
	assert.Equal(t, "[::1]:443", sockaddrString(&unix.SockaddrInet6{Port: 443, Addr: [16]byte{15: 1}}))
	mapped := [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}
	assert.Equal(t, "127.0.0.1:9", sockaddrString(&unix.SockaddrInet6{Port: 9, Addr: mapped}))
}
