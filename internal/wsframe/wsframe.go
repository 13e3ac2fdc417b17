// Package wsframe reads and writes WebSocket frames (RFC 6455 §5) for a
// server that owns its sockets: Reader parses client frames incrementally
// from whatever bytes a non-blocking read returned, keeping only the bytes of
// an incomplete frame, so a peer that sends half a frame and stalls holds no
// goroutine; Append* build unmasked server frames.
package wsframe

import (
	"encoding/binary"
)

// Opcodes (RFC 6455 §5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Close status codes (RFC 6455 §7.4.1).
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseUnsupportedData uint16 = 1003
	CloseNoStatus        uint16 = 1005 // never sent: "no code in the close frame"
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseTooBig          uint16 = 1009
	CloseInternalError   uint16 = 1011
	CloseTryAgainLater   uint16 = 1013
)

// HeaderLen returns the length of a server frame header (no mask) for a
// payload of n bytes.
func HeaderLen(n int) int {
	switch {
	case n > 0xFFFF:
		return 10
	case n > 125:
		return 4
	default:
		return 2
	}
}

// PutHeader writes a final, unmasked frame header for opcode op and a payload
// of n bytes at the start of dst, which must have HeaderLen(n) bytes.
func PutHeader(dst []byte, op byte, n int) {
	dst[0] = 0x80 | op // FIN
	switch HeaderLen(n) {
	case 2:
		dst[1] = byte(n)
	case 4:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:], uint64(n))
	}
}

// AppendFrame appends a final, unmasked frame with opcode op and payload.
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	h := HeaderLen(len(payload))
	start := len(dst)
	dst = append(dst, make([]byte, h)...)
	PutHeader(dst[start:], op, len(payload))
	return append(dst, payload...)
}

// ClosePayload returns the payload of a close frame: the code, then the
// reason cut to fit a control frame (125 bytes).
func ClosePayload(code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	return append(p, reason...)
}

// ParseClosePayload returns the code and reason of a close frame's payload,
// CloseNoStatus for an empty one, or an error for one a peer may not send.
func ParseClosePayload(p []byte) (uint16, string, error) {
	switch len(p) {
	case 0:
		return CloseNoStatus, "", nil
	case 1:
		return 0, "", ErrBadClosePayload
	}
	code := binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return 0, "", ErrBadCloseCode
	}
	if !validUTF8(p[2:]) {
		return 0, "", ErrInvalidUTF8
	}
	return code, string(p[2:]), nil
}

// validCloseCode: the codes an endpoint may put in a close frame (§7.4).
func validCloseCode(c uint16) bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1011, c >= 3000 && c <= 4999:
		return true
	}
	return false
}
