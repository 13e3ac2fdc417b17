package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
)

// The lean client's frames (RFC 6455 section 5.2): what it reads and what it
// writes.

// Opcodes (section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Protocol errors of the server's frames; each ends the reading.
var (
	errReservedBits = errors.New("websocket: frame with reserved bits set (no extension was negotiated)")
	errMaskedFrame  = errors.New("websocket: masked frame from the server (section 5.1)")
	errBadOpcode    = errors.New("websocket: unknown opcode")
	errBadControl   = errors.New("websocket: control frame fragmented or over 125 bytes (section 5.5)")
	errBadLength    = errors.New("websocket: 64-bit length with its top bit set (section 5.2)")
	errContinuation = errors.New("websocket: continuation outside a fragmented message, or a message inside one (section 5.4)")
	errTooBig       = errors.New("websocket: message over 16 MiB")
	errCloseSent    = errors.New("websocket: close frame sent")
	// errNoCloseFrame is the socket's end without a close frame (what
	// RFC 6455 section 7.1.5 calls 1006, abnormal closure).
	errNoCloseFrame = fmt.Errorf("websocket: closed without a close frame (1006): %w", io.EOF)
)

// ReadMessage returns the payload of the next text or binary message,
// valid until the next call: a slice of the connection's buffer, so that a
// message costs no allocation once the buffer has grown to the largest
// message. A fragmented message comes whole. Pings are answered with a pong
// carrying their payload, pongs ignored; a close frame is answered with one
// echoing its code and ends the reading with a *closeError. After an error
// every call returns it.
func (c *leanConn) ReadMessage() ([]byte, error) {
	if c.readErr != nil {
		return nil, c.readErr
	}
	p, err := c.next()
	if err != nil {
		c.readErr = err
	}
	return p, err
}

// next reads frames until a message is complete.
func (c *leanConn) next() ([]byte, error) {
	if c.pos == c.end {
		c.pos, c.end = 0, 0 // the last message is given up: start over
	}
	for {
		op, fin, payload, err := c.frame()
		if err != nil {
			return nil, err
		}
		switch op {
		case opText, opBinary:
			if c.inMsg {
				return nil, errContinuation
			}
			if fin {
				return payload, nil
			}
			c.inMsg, c.msg, c.msgLen = true, c.pos-len(payload), len(payload)
		case opContinuation:
			if !c.inMsg {
				return nil, errContinuation
			}
			// Move the fragment's payload down to the end of the message
			// so far, over the frame headers between them.
			c.msgLen += copy(c.buf[c.msg+c.msgLen:], payload)
			if fin {
				m := c.buf[c.msg : c.msg+c.msgLen]
				c.inMsg, c.msg, c.msgLen = false, 0, 0
				return m, nil
			}
		case opPing:
			if err := c.writeFrame(opPong, payload); err != nil {
				return nil, err
			}
		case opPong:
		case opClose:
			return nil, c.answerClose(payload)
		default:
			return nil, errBadOpcode
		}
	}
}

// frame reads the next frame whole and returns its opcode, FIN bit and
// payload (a slice of buf, which pos has passed).
func (c *leanConn) frame() (op byte, fin bool, payload []byte, err error) {
	if err := c.fill(2); err != nil {
		return 0, false, nil, err
	}
	b0, b1 := c.buf[c.pos], c.buf[c.pos+1]
	op, fin = b0&0x0F, b0&0x80 != 0
	switch {
	case b0&0x70 != 0:
		return 0, false, nil, errReservedBits
	case b1&0x80 != 0:
		return 0, false, nil, errMaskedFrame
	}
	head, n := 2, uint64(b1&0x7F)
	switch n {
	case 126:
		head = 4
	case 127:
		head = 10
	}
	if err := c.fill(head); err != nil {
		return 0, false, nil, err
	}
	switch head {
	case 4:
		n = uint64(binary.BigEndian.Uint16(c.buf[c.pos+2:]))
	case 10:
		if n = binary.BigEndian.Uint64(c.buf[c.pos+2:]); n>>63 != 0 {
			return 0, false, nil, errBadLength
		}
	}
	switch {
	case op >= opClose && (!fin || n > 125):
		return 0, false, nil, errBadControl
	case op < opClose && n > uint64(maxMessage-c.msgLen):
		return 0, false, nil, errTooBig
	}
	size := head + int(n)
	if err := c.fill(size); err != nil {
		return 0, false, nil, err
	}
	payload = c.buf[c.pos+head : c.pos+size]
	c.pos += size
	return op, fin, payload, nil
}

// fill reads until buf[pos:] holds need bytes, making room first when the
// buffer's end is too near.
func (c *leanConn) fill(need int) error {
	if c.pos+need > len(c.buf) {
		c.makeRoom(need)
	}
	for c.end-c.pos < need {
		n, err := c.conn.Read(c.buf[c.end:])
		c.end += n
		if err == io.EOF {
			err = errNoCloseFrame
		}
		if err != nil && c.end-c.pos < need {
			return err
		}
	}
	return nil
}

// makeRoom moves the message being put together and the unparsed bytes to
// the buffer's start, so that need bytes fit from pos on; into a buffer
// twice as large, as often as it takes, when they would not.
func (c *leanConn) makeRoom(need int) {
	dst := c.buf
	if size := c.msgLen + need; size > len(dst) {
		n := max(len(dst), initialReadBuf)
		for n < size {
			n *= 2
		}
		dst = make([]byte, n)
	}
	copy(dst, c.buf[c.msg:c.msg+c.msgLen]) // msg is before pos: nothing unparsed is overwritten
	unparsed := copy(dst[c.msgLen:], c.buf[c.pos:c.end])
	c.buf, c.msg, c.pos, c.end = dst, 0, c.msgLen, c.msgLen+unparsed
}

// answerClose answers a close frame with payload with one that echoes its
// code (section 5.5.1), and returns the close as a *closeError.
func (c *leanConn) answerClose(payload []byte) error {
	code, reason := 1005, "" // 1005: no status code (section 7.4.1), never sent
	if len(payload) >= 2 {
		code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		payload = payload[:2]
	} else {
		payload = nil
	}
	if err := c.writeFrame(opClose, payload); err != nil && !errors.Is(err, errCloseSent) {
		return err
	}
	return &closeError{Code: code, Reason: reason}
}

// WriteText sends p as one masked text frame, in one write.
func (c *leanConn) WriteText(p []byte) error { return c.writeFrame(opText, p) }

// writeFrame sends one frame of opcode op with payload p, masked with a
// fresh key (section 5.3), in one write. Nothing is sent after a close.
func (c *leanConn) writeFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return errCloseSent
	}
	head := 2
	switch n := len(p); {
	case n > 0xFFFF:
		head = 10
	case n > 125:
		head = 4
	}
	size := head + 4 + len(p)
	if cap(c.wbuf) < size {
		c.wbuf = make([]byte, max(size, 128))
	}
	b := c.wbuf[:size]
	b[0] = 0x80 | op // FIN: the client never fragments
	switch head {
	case 2:
		b[1] = 0x80 | byte(len(p))
	case 4:
		b[1] = 0x80 | 126
		binary.BigEndian.PutUint16(b[2:], uint16(len(p)))
	case 10:
		b[1] = 0x80 | 127
		binary.BigEndian.PutUint64(b[2:], uint64(len(p)))
	}
	key := b[head : head+4]
	binary.LittleEndian.PutUint32(key, rand.Uint32())
	for i, v := range p {
		b[head+4+i] = v ^ key[i&3]
	}
	if op == opClose {
		c.closeSent = true
	}
	_, err := c.conn.Write(b)
	return err
}
