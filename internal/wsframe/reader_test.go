package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientFrame builds a masked client frame with gobwas/ws, an independent
// encoder.
func clientFrame(t testing.TB, fin bool, op ws.OpCode, payload []byte) []byte {
	var buf bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	require.NoError(t, ws.WriteFrame(&buf, ws.MaskFrameInPlace(f)))
	return buf.Bytes()
}

type got struct {
	op      byte
	payload string
}

func collect(r *Reader, chunks ...[]byte) ([]got, error) {
	var out []got
	h := func(op byte, p []byte) error {
		out = append(out, got{op, string(p)})
		return nil
	}
	for _, c := range chunks {
		if err := r.Feed(append([]byte(nil), c...), h); err != nil {
			return out, err
		}
	}
	return out, nil
}

func TestReaderWholeFrames(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 65535, 65536, 100000} {
		p := strings.Repeat("é", size/2) + strings.Repeat("a", size%2)
		data := clientFrame(t, true, ws.OpText, []byte(p))
		var r Reader
		out, err := collect(&r, data)
		require.NoError(t, err)
		assert.Equal(t, []got{{OpText, p}}, out, "size %d", size)
		assert.Zero(t, r.Buffered())
	}
}

// Any split of the stream gives the same messages: what a slow client that
// sends a byte at a time gets.
func TestReaderByteByByte(t *testing.T) {
	var stream []byte
	stream = append(stream, clientFrame(t, false, ws.OpText, []byte("hel"))...)
	stream = append(stream, clientFrame(t, true, ws.OpPing, []byte("p1"))...) // control between fragments
	stream = append(stream, clientFrame(t, false, ws.OpContinuation, []byte("lo "))...)
	stream = append(stream, clientFrame(t, true, ws.OpContinuation, []byte("world"))...)
	stream = append(stream, clientFrame(t, true, ws.OpBinary, []byte{0, 1, 2})...)
	stream = append(stream, clientFrame(t, true, ws.OpClose, ClosePayload(1000, "bye"))...)
	want := []got{{OpPing, "p1"}, {OpText, "hello world"}, {OpBinary, "\x00\x01\x02"}, {OpClose, "\x03\xe8bye"}}

	var whole Reader
	out, err := collect(&whole, stream)
	require.NoError(t, err)
	assert.Equal(t, want, out)

	var slow Reader
	chunks := make([][]byte, len(stream))
	for i := range stream {
		chunks[i] = stream[i : i+1]
	}
	out, err = collect(&slow, chunks...)
	require.NoError(t, err)
	assert.Equal(t, want, out)
	assert.Zero(t, slow.Buffered(), "nothing held once every frame completed")
}

func TestReaderHoldsOnlyIncompleteFrame(t *testing.T) {
	data := clientFrame(t, true, ws.OpText, []byte(strings.Repeat("x", 1000)))
	var r Reader
	out, err := collect(&r, data[:600])
	require.NoError(t, err)
	assert.Empty(t, out)
	assert.Equal(t, 600, r.Buffered())
	out, err = collect(&r, data[600:])
	require.NoError(t, err)
	assert.Len(t, out, 1)
	assert.Zero(t, r.Buffered())
}

func TestReaderErrors(t *testing.T) {
	unmasked := func(b0, b1 byte, rest ...byte) []byte { return append([]byte{b0, b1}, rest...) }
	masked := func(b0 byte, payload []byte) []byte {
		// hand-built masked frame with a zero key, for headers gobwas refuses to build
		h := []byte{b0}
		switch {
		case len(payload) > 125:
			h = append(h, 0x80|126, byte(len(payload)>>8), byte(len(payload)))
		default:
			h = append(h, 0x80|byte(len(payload)))
		}
		return append(append(h, 0, 0, 0, 0), payload...)
	}
	big := make([]byte, 10)
	big[0], big[1] = 0x81, 0x80|127
	binary.BigEndian.PutUint64(big[2:], 1<<63)

	cases := []struct {
		name string
		data []byte
		max  int
		want *CloseError
	}{
		{name: "unmasked", data: unmasked(0x81, 0x01, 'a'), want: ErrUnmasked},
		{name: "rsv1", data: masked(0xC1, []byte("a")), want: ErrReservedBits},
		{name: "opcode 3", data: masked(0x83, nil), want: ErrReservedOpcode},
		{name: "opcode 0xB", data: masked(0x8B, nil), want: ErrReservedOpcode},
		{name: "fragmented ping", data: masked(0x09, nil), want: ErrControlFragmented},
		{name: "long ping", data: masked(0x89, make([]byte, 126)), want: ErrControlTooLong},
		{name: "lone continuation", data: clientFrame(t, true, ws.OpContinuation, []byte("x")), want: ErrUnexpectedCont},
		{name: "new message mid-fragments", data: append(clientFrame(t, false, ws.OpText, []byte("a")), clientFrame(t, true, ws.OpText, []byte("b"))...), want: ErrExpectedCont},
		{name: "length top bit", data: big, want: ErrLengthOverflow},
		{name: "bad utf-8", data: clientFrame(t, true, ws.OpText, []byte{0xff, 0xfe}), want: ErrInvalidUTF8},
		{name: "bad utf-8 across fragments", data: append(clientFrame(t, false, ws.OpText, []byte{0xe2, 0x82}), clientFrame(t, true, ws.OpContinuation, []byte{0x28})...), want: ErrInvalidUTF8},
		{name: "too big, one frame", data: clientFrame(t, true, ws.OpText, make([]byte, 101)), max: 100, want: ErrTooBig},
		{name: "too big, fragments", data: append(clientFrame(t, false, ws.OpText, make([]byte, 60)), clientFrame(t, true, ws.OpContinuation, make([]byte, 60))...), max: 100, want: ErrTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Reader{MaxMessageSize: tc.max}
			_, err := collect(&r, tc.data)
			var ce *CloseError
			require.True(t, errors.As(err, &ce), "got %v", err)
			assert.Equal(t, tc.want, ce)
		})
	}
}

// Regression (fail fast, RFC 6455 §8.1): invalid UTF-8 in the first fragment
// of a text message fails with 1007 as soon as that fragment arrives, not
// when the message completes; a rune cut by a fragment boundary is fine.
func TestReaderInvalidUTF8FailsOnFirstFragment(t *testing.T) {
	var r Reader
	_, err := collect(&r, clientFrame(t, false, ws.OpText, []byte("ok \xff")))
	assert.Equal(t, ErrInvalidUTF8, err, "no continuation has been sent yet")

	var r2 Reader
	euro := []byte("€") // e2 82 ac, cut after its second byte
	out, err := collect(&r2,
		clientFrame(t, false, ws.OpText, append([]byte("a"), euro[:2]...)),
		clientFrame(t, false, ws.OpContinuation, euro[2:]),
		clientFrame(t, true, ws.OpContinuation, []byte("b")))
	require.NoError(t, err)
	assert.Equal(t, []got{{OpText, "a€b"}}, out)

	var r3 Reader
	_, err = collect(&r3, clientFrame(t, false, ws.OpText, []byte("a")), clientFrame(t, false, ws.OpContinuation, []byte{0xc3, 0x28}))
	assert.Equal(t, ErrInvalidUTF8, err, "a bad second fragment fails before the last")
}

// The size limit applies before the payload arrives: a header announcing a
// huge frame fails at once, without buffering anything.
func TestReaderTooBigFailsOnHeader(t *testing.T) {
	r := Reader{MaxMessageSize: 1 << 10}
	hdr := clientFrame(t, true, ws.OpText, make([]byte, 1<<20))[:14]
	_, err := collect(&r, hdr)
	assert.Equal(t, ErrTooBig, err)
}

func TestReaderHandlerErrorStops(t *testing.T) {
	stop := errors.New("stop")
	var r Reader
	data := append(clientFrame(t, true, ws.OpText, []byte("a")), clientFrame(t, true, ws.OpText, []byte("b"))...)
	n := 0
	err := r.Feed(data, func(byte, []byte) error { n++; return stop })
	assert.Equal(t, stop, err)
	assert.Equal(t, 1, n)
}

func TestClosePayload(t *testing.T) {
	code, reason, err := ParseClosePayload(ClosePayload(1001, "going away"))
	require.NoError(t, err)
	assert.Equal(t, CloseGoingAway, code)
	assert.Equal(t, "going away", reason)

	long := ClosePayload(1000, strings.Repeat("r", 200))
	assert.Len(t, long, 125, "fits a control frame")

	code, _, err = ParseClosePayload(nil)
	require.NoError(t, err)
	assert.Equal(t, CloseNoStatus, code)
	for _, bad := range [][]byte{{3}, {0x03, 0xed}, {0x03, 0xee}, {0x0b, 0xb8 - 1}, {0x13, 0x88}} { // 1 byte, 1005, 1006, 2999, 5000
		_, _, err := ParseClosePayload(bad)
		assert.Error(t, err, "% x", bad)
	}
	_, _, err = ParseClosePayload([]byte{0x03, 0xe8, 0xff})
	assert.Equal(t, ErrInvalidUTF8, err)
}

// Server frames are read back by gobwas/ws.
func TestAppendFrame(t *testing.T) {
	for _, size := range []int{0, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte("z"), size)
		b := AppendFrame([]byte("prefix"), OpBinary, p)
		require.Equal(t, "prefix", string(b[:6]))
		f, err := ws.ReadFrame(bytes.NewReader(b[6:]))
		require.NoError(t, err)
		assert.True(t, f.Header.Fin)
		assert.False(t, f.Header.Masked)
		assert.Equal(t, ws.OpBinary, f.Header.OpCode)
		assert.Equal(t, string(p), string(f.Payload), "size %d", size)
	}
}

func BenchmarkReaderFeed(b *testing.B) {
	for _, size := range []int{64, 1024, 16384} {
		frame := clientFrame(b, true, ws.OpText, bytes.Repeat([]byte("a"), size))
		b.Run(fmt.Sprint("size=", size), func(b *testing.B) {
			var r Reader
			buf := make([]byte, len(frame))
			h := func(byte, []byte) error { return nil }
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				copy(buf, frame) // Feed unmasks in place
				if err := r.Feed(buf, h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
