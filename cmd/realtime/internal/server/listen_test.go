//go:build linux

package server

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The raw door's sockets carry no TCP keep-alive (the WebSocket heartbeat
// finds dead peers; arming it costs four setsockopt calls per accept); the
// HTTP door's keep them, for idle HTTP connections.
func TestRawDoorSocketsHaveNoTCPKeepAlive(t *testing.T) {
	ln, rawLn, err := listen(Options{Addr: "127.0.0.1:0", RawAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	defer ln.Close()
	defer rawLn.Close()
	assert.Equal(t, 1, acceptedKeepAlive(t, ln), "HTTP door")
	assert.Equal(t, 0, acceptedKeepAlive(t, rawLn), "raw door")
}

// acceptedKeepAlive dials ln and returns SO_KEEPALIVE of the accepted socket.
func acceptedKeepAlive(t *testing.T, ln net.Listener) int {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	raw, err := s.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) }))
	require.NoError(t, gerr)
	return v
}
