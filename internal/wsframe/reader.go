package wsframe

import (
	"encoding/binary"
	"unicode/utf8"
)

// Handler receives each complete data message (fragments joined, opcode
// OpText or OpBinary) and each control frame. payload is valid only during
// the call. A non-nil error stops Feed and is returned by it.
//
// Concurrency: it runs on the goroutine that called Feed.
type Handler func(op byte, payload []byte) error

// Reader parses client-to-server frames incrementally. Between calls it keeps
// only the bytes of an incomplete frame and the payload of an incomplete
// fragmented message; both are released as soon as they complete, so an idle
// connection's Reader holds no buffer. The zero value accepts messages of any
// size; set MaxMessageSize. A Reader is not safe for concurrent use.
type Reader struct {
	// MaxMessageSize is the largest message (all fragments together) accepted;
	// a bigger one fails with ErrTooBig as soon as its header says so, before
	// its payload is buffered. Zero means no limit.
	MaxMessageSize int

	p     *partial // nil while nothing is held: an idle Reader is 24 bytes
	msgOp byte     // opcode of the message being assembled; 0 if none
}

// partial is what a Reader holds between calls, allocated only while it
// holds something.
type partial struct {
	pending []byte // an incomplete frame's bytes
	msg     []byte // payload of a fragmented message so far
	valid   int    // bytes of msg already checked as UTF-8 (text messages)
}

// Buffered returns how many bytes the Reader holds between calls.
func (r *Reader) Buffered() int {
	if r.p == nil {
		return 0
	}
	return len(r.p.pending) + len(r.p.msg)
}

// Feed parses data, which may hold any number of frames and end in the middle
// of one, calling h for what completes. It may unmask data in place. After an
// error the Reader must not be used again.
func (r *Reader) Feed(data []byte, h Handler) error {
	err := r.feed(data, h)
	if r.p != nil && r.p.pending == nil && r.p.msg == nil {
		r.p = nil
	}
	return err
}

func (r *Reader) state() *partial {
	if r.p == nil {
		r.p = &partial{}
	}
	return r.p
}

func (r *Reader) feed(data []byte, h Handler) error {
	if r.p != nil && len(r.p.pending) > 0 {
		r.p.pending = append(r.p.pending, data...)
		data = r.p.pending
	}
	for len(data) > 0 {
		n, err := r.frame(data, h)
		if err != nil {
			return err
		}
		if n == 0 {
			break // incomplete
		}
		data = data[n:]
	}
	switch {
	case len(data) == 0:
		if r.p != nil {
			r.p.pending = nil
		}
	case r.p != nil && len(r.p.pending) > 0 && &data[0] == &r.p.pending[0]:
		// nothing consumed from pending: keep it as it is
	default:
		// Keep the tail. copy handles data aliasing pending.
		p := r.state()
		if cap(p.pending) < len(data) {
			p.pending = make([]byte, len(data), max(len(data), 512))
		} else {
			p.pending = p.pending[:len(data)]
		}
		copy(p.pending, data)
	}
	return nil
}

// frame handles the frame at the start of data and returns its length, or 0
// if data does not hold all of it yet.
func (r *Reader) frame(data []byte, h Handler) (int, error) {
	hd, ok, err := r.header(data)
	if err != nil || !ok {
		return 0, err
	}
	total := uint64(hd.size) + hd.length
	if uint64(len(data)) < total {
		return 0, nil
	}
	payload := data[hd.size:total]
	unmask(payload, data[hd.size-4:hd.size])
	if err := r.dispatch(hd, payload, h); err != nil {
		return 0, err
	}
	return int(total), nil
}

// header is a parsed frame header.
type header struct {
	fin    bool
	op     byte
	size   int    // header length, mask key included
	length uint64 // payload length
}

// header parses and checks the header at the start of data; ok is false if
// data does not hold all of it yet.
func (r *Reader) header(data []byte) (hd header, ok bool, err error) {
	if len(data) < 2 {
		return hd, false, nil
	}
	b0, b1 := data[0], data[1]
	hd.fin, hd.op = b0&0x80 != 0, b0&0x0F
	if b0&0x70 != 0 {
		return hd, false, ErrReservedBits
	}
	if b1&0x80 == 0 {
		return hd, false, ErrUnmasked
	}
	switch hd.op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return hd, false, ErrReservedOpcode
	}
	hd.size, hd.length = 2, uint64(b1&0x7F)
	switch hd.length {
	case 126:
		if hd.size = 4; len(data) < hd.size {
			return hd, false, nil
		}
		hd.length = uint64(binary.BigEndian.Uint16(data[2:]))
	case 127:
		if hd.size = 10; len(data) < hd.size {
			return hd, false, nil
		}
		hd.length = binary.BigEndian.Uint64(data[2:])
		if hd.length>>63 != 0 {
			return hd, false, ErrLengthOverflow
		}
	}
	if err := r.check(hd); err != nil {
		return hd, false, err
	}
	hd.size += 4 // mask key
	return hd, true, nil
}

// check applies the rules on control frames, fragments and size.
func (r *Reader) check(hd header) error {
	if hd.op&0x8 != 0 { // control
		if !hd.fin {
			return ErrControlFragmented
		}
		if hd.length > 125 {
			return ErrControlTooLong
		}
		return nil
	}
	if hd.op == OpContinuation && r.msgOp == 0 {
		return ErrUnexpectedCont
	}
	if hd.op != OpContinuation && r.msgOp != 0 {
		return ErrExpectedCont
	}
	held := 0
	if r.p != nil {
		held = len(r.p.msg)
	}
	if r.MaxMessageSize > 0 && hd.length > uint64(r.MaxMessageSize-held) {
		return ErrTooBig
	}
	return nil
}

// dispatch hands a control frame or a whole message to h, and keeps the
// fragments of a message until its last one.
func (r *Reader) dispatch(hd header, payload []byte, h Handler) error {
	switch {
	case hd.op&0x8 != 0:
		return h(hd.op, payload)
	case hd.fin && hd.op != OpContinuation: // a whole message in one frame: no copy
		return r.message(hd.op, payload, h)
	}
	if hd.op != OpContinuation {
		r.msgOp = hd.op
	}
	p := r.state()
	p.msg = append(p.msg, payload...)
	if r.msgOp == OpText {
		// Fail fast (RFC 6455 §8.1): check each fragment as it comes,
		// leaving only a rune cut by the fragment boundary for later.
		n, ok := checkUTF8(p.msg, p.valid, hd.fin)
		if !ok {
			return ErrInvalidUTF8
		}
		p.valid = n
	}
	if !hd.fin {
		return nil
	}
	op, msg := r.msgOp, p.msg
	r.msgOp, p.msg, p.valid = 0, nil, 0
	return h(op, msg)
}

func (r *Reader) message(op byte, payload []byte, h Handler) error {
	if op == OpText && !validUTF8(payload) {
		return ErrInvalidUTF8
	}
	return h(op, payload)
}

// unmask XORs p with the 4-byte key (RFC 6455 §5.3), 8 bytes at a time.
func unmask(p, key []byte) {
	k4 := binary.LittleEndian.Uint32(key)
	k8 := uint64(k4)<<32 | uint64(k4)
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

func validUTF8(p []byte) bool { return utf8.Valid(p) }

// checkUTF8 checks msg[from:] (from is a rune boundary) and returns how far
// msg is now known to be valid. Unless final, an incomplete rune at the end
// is left for the next fragment to complete.
func checkUTF8(msg []byte, from int, final bool) (int, bool) {
	end := len(msg)
	if !final {
		for i := end - 1; i >= from && i >= end-utf8.UTFMax+1; i-- {
			if utf8.RuneStart(msg[i]) {
				if !utf8.FullRune(msg[i:end]) {
					end = i
				}
				break
			}
		}
	}
	return end, utf8.Valid(msg[from:end])
}
