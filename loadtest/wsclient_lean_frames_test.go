package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lean client's frames, from hand-written servers: what gorilla's
// server would never send, and the reader's allocations.

// frame returns a server frame (unmasked) of opcode op with payload p.
func frame(op byte, fin bool, p []byte) []byte {
	b := []byte{op, 0}
	if fin {
		b[0] |= 0x80
	}
	switch n := len(p); {
	case n > 0xFFFF:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	case n > 125:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = byte(n)
	}
	return append(b, p...)
}

// readClientFrame reads one frame from the client, fails t unless it is
// masked, and returns its opcode and unmasked payload.
func readClientFrame(t *testing.T, r io.Reader) (byte, []byte) {
	h := make([]byte, 2)
	if _, err := io.ReadFull(r, h); err != nil {
		t.Error(err)
		return 0, nil
	}
	if h[1]&0x80 == 0 || h[0]&0x80 == 0 {
		t.Errorf("client frame %x: not masked or not final", h)
	}
	n := int(h[1] & 0x7F) // the tests' control frames are short
	key := make([]byte, 4)
	p := make([]byte, n)
	io.ReadFull(r, key)
	io.ReadFull(r, p)
	for i := range p {
		p[i] ^= key[i&3]
	}
	return h[0] & 0x0F, p
}

// Lengths in 7, 16 and 64 bits at their edges; fragmented messages, with
// pings between the fragments (answered with their payload) and large
// enough to grow the buffer while one is put together.
func TestLeanReadFrames(t *testing.T) {
	big := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   [][]byte
		pongs  []string
	}{
		{name: "lengths",
			frames: [][]byte{frame(opText, true, big(125, 'a')), frame(opText, true, big(126, 'b')),
				frame(opBinary, true, big(0xFFFF, 'c')), frame(opText, true, big(0x10000, 'd')), frame(opText, true, nil)},
			want: [][]byte{big(125, 'a'), big(126, 'b'), big(0xFFFF, 'c'), big(0x10000, 'd'), {}}},
		{name: "fragmented",
			frames: [][]byte{frame(opText, false, []byte("frag")), frame(opPing, true, []byte("p1")),
				frame(opContinuation, false, []byte("men")), frame(opContinuation, true, []byte("ted")),
				frame(opText, true, []byte("next"))},
			want: [][]byte{[]byte("fragmented"), []byte("next")}, pongs: []string{"p1"}},
		{name: "fragmented past the buffer",
			frames: [][]byte{frame(opText, false, big(300, 'x')), frame(opContinuation, false, big(600, 'y')),
				frame(opPing, true, []byte("p2")), frame(opContinuation, true, big(70000, 'z')), frame(opText, true, []byte("after"))},
			want: [][]byte{append(append(big(300, 'x'), big(600, 'y')...), big(70000, 'z')...), []byte("after")}, pongs: []string{"p2"}},
	} {
		pongs := make(chan string, 4)
		url := rawServer(t, func(c net.Conn) {
			c.Write([]byte(switched))
			for _, f := range tc.frames {
				c.Write(f) // one segment each, at most
			}
			for range tc.pongs {
				if op, p := readClientFrame(t, c); op == opPong {
					pongs <- string(p)
				}
			}
			time.Sleep(time.Second)
		})
		c := dialTest(t, url)
		for i, want := range tc.want {
			if got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: message %d: %d bytes %.20q…, %v; want %d bytes %.20q…", tc.name, i, len(got), got, err, len(want), want)
			}
		}
		for _, want := range tc.pongs {
			if got := <-pongs; got != want {
				t.Errorf("%s: pong %q, want %q", tc.name, got, want)
			}
		}
	}
}

// What a server must not send ends the reading with a protocol error.
func TestLeanProtocolErrors(t *testing.T) {
	tooLong := []byte{0x81, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}
	tooBig := binary.BigEndian.AppendUint64([]byte{0x81, 127}, maxMessage+1)
	for _, tc := range []struct {
		name string
		send []byte
		want error
	}{
		{name: "masked", send: []byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, want: errMaskedFrame},
		{name: "reserved bit", send: []byte{0xC1, 0}, want: errReservedBits},
		{name: "unknown opcode", send: frame(0x3, true, nil), want: errBadOpcode},
		{name: "stray continuation", send: frame(opContinuation, true, []byte("x")), want: errContinuation},
		{name: "message inside a message", send: append(frame(opText, false, []byte("a")), frame(opText, true, []byte("b"))...), want: errContinuation},
		{name: "fragmented ping", send: frame(opPing, false, nil), want: errBadControl},
		{name: "long ping", send: frame(opPing, true, make([]byte, 126)), want: errBadControl},
		{name: "length top bit", send: tooLong, want: errBadLength},
		{name: "over 16 MiB", send: tooBig, want: errTooBig},
		{name: "cut short", send: frame(opText, true, []byte("abc"))[:3], want: io.EOF},
	} {
		url := rawServer(t, func(c net.Conn) { c.Write(append([]byte(switched), tc.send...)) })
		c := dialTest(t, url)
		if _, err := c.ReadMessage(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// In the steady state a message costs the reader no allocation: it is a
// slice of the connection's buffer.
func TestLeanReadDoesNotAllocate(t *testing.T) {
	const msgs = 150
	sent := make(chan struct{})
	url := rawServer(t, func(c net.Conn) {
		b := []byte(switched)
		for i := range msgs {
			b = append(b, frame(opText, true, []byte(`{"type":"chat","room":"big","data":{"seq":`+strings.Repeat("9", i%20)+`}}`))...)
		}
		c.Write(b) // 10 KB: the socket takes it whole
		close(sent)
		time.Sleep(5 * time.Second)
	})
	c := dialTest(t, url)
	<-sent
	allocs := testing.AllocsPerRun(msgs-1, func() {
		if _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Errorf("%.1f allocations per message", allocs)
	}
}

// replayConn is a socket that reads data over and over, and drops writes.
type replayConn struct {
	net.Conn
	data []byte
	off  int
}

func (r *replayConn) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off = (r.off + k) % len(r.data)
	}
	return n, nil
}

func (r *replayConn) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkLeanReadMessage(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			f := frame(opText, true, bytes.Repeat([]byte("x"), size))
			c := &leanConn{conn: &replayConn{data: bytes.Repeat(f, 16)}, buf: make([]byte, initialReadBuf)}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.ReadMessage(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
