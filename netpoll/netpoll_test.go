//go:build linux

package netpoll

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair returns a connected loopback pair: the server side as an owned fd
// (the net.Conn closed, as the handler does), the client as a net.Conn.
func pair(t *testing.T) (fd int, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	srv, err := ln.Accept()
	require.NoError(t, err)
	fd, err = DupFD(srv)
	require.NoError(t, err)
	srv.Close() // the duplicate keeps the socket open
	t.Cleanup(func() { Close(fd) })
	return fd, client
}

func TestOwnedFDIsNonBlocking(t *testing.T) {
	fd, client := pair(t)
	buf := make([]byte, 16)
	_, err := Read(fd, buf)
	assert.ErrorIs(t, err, ErrWouldBlock, "nothing to read: no blocking")

	_, err = client.Write([]byte("hello"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := Read(fd, buf)
		return err == nil && string(buf[:n]) == "hello"
	}, 2*time.Second, time.Millisecond)

	n, err := Writev(fd, [][]byte{[]byte("a"), []byte("bc")})
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, 3)
	_, err = client.Read(got)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got), "one writev, buffers in order")

	require.NoError(t, ShutdownWrite(fd))
	_, err = client.Read(got)
	assert.Error(t, err, "the peer reads EOF after a half-close")
	client.Close()
	require.Eventually(t, func() bool { _, err := Read(fd, buf); return err == ErrEOF }, 2*time.Second, time.Millisecond)
}

// One-shot: a readable descriptor reports once, then nothing until Arm.
func TestPollerOneShot(t *testing.T) {
	p, err := New(2, nil)
	require.NoError(t, err)
	defer p.Close()
	fd, client := pair(t)
	events := make(chan Event, 10)
	require.NoError(t, p.Add(fd, func(e Event) { events <- e }))

	client.Write([]byte("x"))
	select {
	case e := <-events:
		assert.NotZero(t, e&Readable)
	case <-time.After(2 * time.Second):
		t.Fatal("no readable event")
	}
	client.Write([]byte("y")) // not re-armed: silent
	select {
	case e := <-events:
		t.Fatalf("event %v before re-arming", e)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, p.Arm(fd, false))
	select {
	case e := <-events:
		assert.NotZero(t, e&Readable, "unread bytes report again once re-armed")
	case <-time.After(2 * time.Second):
		t.Fatal("no event after Arm")
	}
	require.NoError(t, p.Arm(fd, true))
	select {
	case e := <-events:
		assert.NotZero(t, e&Writable|e&Readable)
	case <-time.After(2 * time.Second):
		t.Fatal("no event armed for writing")
	}
	require.NoError(t, p.Del(fd))
	assert.Error(t, p.Arm(fd, false), "removed")
	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.Add(fd, func(Event) {}), ErrClosed)
}

type countTask struct {
	n  *atomic.Int64
	wg *sync.WaitGroup
}

func (c countTask) Run(s *Scratch) {
	if len(s.Read) == ReadBufferSize && cap(s.IOV) == MaxIOV {
		c.n.Add(1)
	}
	c.wg.Done()
}

func TestPoolRunsEverythingThenStops(t *testing.T) {
	p := NewPool(4)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 10_000 {
		wg.Add(1)
		require.True(t, p.Submit(countTask{&n, &wg}))
	}
	wg.Wait()
	assert.EqualValues(t, 10_000, n.Load(), "every task ran, with its worker's scratch")
	p.Close()
	assert.False(t, p.Submit(countTask{&n, &wg}), "closed")
}

// Writev is on the fan-out's path once per recipient: it must allocate
// nothing, for a few buffers (the usual flush) or many (a backlog).
func TestWritevAllocatesNothing(t *testing.T) {
	fd, client := pair(t)
	go func() { // drain, so the socket buffer never fills
		buf := make([]byte, 64<<10)
		for {
			if _, err := client.Read(buf); err != nil {
				return
			}
		}
	}()
	frame := []byte("0123456789")
	few := [][]byte{frame, frame, frame}
	many := make([][]byte, 40)
	for i := range many {
		many[i] = frame
	}
	for _, bufs := range [][][]byte{few, many} {
		allocs := testing.AllocsPerRun(200, func() {
			n, err := Writev(fd, bufs)
			if err != nil && err != ErrWouldBlock || err == nil && n != len(frame)*len(bufs) {
				t.Fatalf("writev of %d buffers: %d, %v", len(bufs), n, err)
			}
		})
		if !raceEnabled || len(bufs) <= 8 { // past eight the iovecs are pooled
			assert.Zero(t, allocs, "writev of %d buffers allocates", len(bufs))
		}
	}
	n, err := Writev(fd, nil)
	assert.NoError(t, err, "nothing to write")
	assert.Zero(t, n)
}
