package realtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// Frame is a Message encoded once for all of its recipients: its JSON and the
// complete WebSocket text frame that carries it. A Frame is immutable and
// shared by every connection it is sent to, so all its methods may be called
// concurrently; do not modify the slices or the Message they return.
type Frame struct {
	wire []byte // RFC 6455 frame header followed by the JSON payload
	hdr  int    // header length in wire
	room string // the room it goes to, when known
	off  uint64 // its offset in the room's history, or 0

	// msg is the message encoded, or nil for a frame built from JSON, whose
	// message is decoded on first use (only a Connection that is not a
	// FrameSender needs it).
	msg    *Message
	decode sync.Once
}

// FrameSender is implemented by connections that can take an already encoded
// Frame. The Hub hands such connections the Frame of a broadcast instead of
// calling Send, so a message is encoded once however many receive it. Any
// other Connection gets Send(msg).
//
// SendFrame has Send's contract: it queues the frame without blocking and
// returns false if the connection is closed or its queue is full.
//
// Concurrency: as Connection, SendFrame may be called from several goroutines
// at once, under the hub's locks.
type FrameSender interface {
	Connection
	SendFrame(f *Frame) bool
}

// NewFrame encodes msg to JSON and wraps it in a single unmasked WebSocket text
// frame, as a server sends it. The JSON is what json.Marshal produces.
func NewFrame(msg *Message) (*Frame, error) {
	frameEncodes.Add(1)
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(msg); err != nil {
		return nil, fmt.Errorf("%w: type %q: %w", ErrEncode, msg.Type, err)
	}
	payload := e.buf.Bytes()
	payload = payload[:len(payload)-1] // Encode's trailing newline
	return newTextFrame(msg, payload), nil
}

// frameEncodes counts JSON encodings of messages (NewFrame calls): one per
// message per system is the design, and tests hold the code to it.
var frameEncodes atomic.Uint64

// NewFrameJSON wraps payload, a Message already encoded to JSON (by NewFrame
// on another pod, say), in a frame without decoding it: a Broadcaster that
// receives encoded messages hands them to the hub this way, so a message is
// encoded once in the whole system. payload is copied. It returns an error if
// payload is not valid JSON.
func NewFrameJSON(payload []byte) (*Frame, error) {
	if !json.Valid(payload) {
		return nil, ErrFrameJSON
	}
	return newTextFrame(nil, payload), nil
}

// encoder is a reusable JSON encoder with its buffer: encoding a frame then
// costs the frame's own allocation, not json.Marshal's copy as well.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	return e
}}

// newTextFrame builds a final, unmasked text frame (RFC 6455 §5.2) around
// payload, with the header in the same allocation so one write sends it all.
func newTextFrame(msg *Message, payload []byte) *Frame {
	hdr := wsframe.HeaderLen(len(payload))
	wire := make([]byte, hdr+len(payload))
	wsframe.PutHeader(wire, wsframe.OpText, len(payload))
	copy(wire[hdr:], payload)
	f := &Frame{msg: msg, wire: wire, hdr: hdr}
	if msg != nil {
		f.room, f.off = msg.Room, msg.Offset
	}
	return f
}

// newPositionedFrame wraps payload, a JSON object, with "offset" and
// "epoch" members spliced in first, in one allocation: how a message gets
// its place in history without being encoded again. payload is copied.
func newPositionedFrame(payload []byte, room string, off uint64, epoch string) *Frame {
	var pre [48]byte
	prefix := append(pre[:0], `{"offset":`...)
	prefix = strconv.AppendUint(prefix, off, 10)
	prefix = append(prefix, `,"epoch":"`...)
	n := len(prefix) + len(epoch) + 2 + len(payload) - 1
	hdr := wsframe.HeaderLen(n)
	wire := make([]byte, hdr+n)
	wsframe.PutHeader(wire, wsframe.OpText, n)
	w := copy(wire[hdr:], prefix)
	w += copy(wire[hdr+w:], epoch)
	w += copy(wire[hdr+w:], `",`)
	copy(wire[hdr+w:], payload[1:])
	return &Frame{wire: wire, hdr: hdr, room: room, off: off}
}

// positionedFrame is f's message at its place in room's history. Its
// Message is decoded from the JSON if ever asked for (only a Connection that
// is not a FrameSender needs it).
func positionedFrame(f *Frame, room string, off uint64, epoch string) *Frame {
	return newPositionedFrame(f.Payload(), room, off, epoch)
}

// Message returns the message the frame encodes. It is shared: do not modify.
// For a frame made by NewFrameJSON it is decoded on the first call; a payload
// that is not shaped like a Message gives a Message with only Data set.
func (f *Frame) Message() *Message {
	f.decode.Do(func() {
		if f.msg != nil {
			return
		}
		var m Message
		if json.Unmarshal(f.Payload(), &m) != nil {
			m = Message{Data: json.RawMessage(f.Payload())}
		}
		f.msg = &m
	})
	return f.msg
}

// Wire returns the complete WebSocket frame (header and payload), ready to be
// written to a client.
func (f *Frame) Wire() []byte { return f.wire }

// Payload returns the frame's JSON payload.
func (f *Frame) Payload() []byte { return f.wire[f.hdr:] }
