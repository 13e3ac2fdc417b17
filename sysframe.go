package realtime

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// The messages every connection causes on its way in, its greeting, its
// join acknowledgement and (on a single pod) its join event, are written
// straight into their frames: the bytes NewFrame gives for their Message,
// without the Message, encoding/json's reflection or the data's own buffer.
// A reconnect storm makes three per connection, and the garbage each
// handshake leaves sets how often the storm collects (a third of the
// server's CPU per connect at GOGC 25 before this).

// sysReserve is the room sysHead leaves for the frame header: enough for a
// payload under 64 KiB (a longer one is copied once). sysFixed is the most a
// system message's own JSON adds to its strings: its keys, quotes, a
// 13-digit ID counter and a 30-byte timestamp. The sizes the frames are made
// with count the rest the same way, so that a frame is one allocation of
// the size it needs unless a string needs escaping.
const (
	sysReserve = 4
	sysFixed   = 117
)

// sysHead starts the wire bytes of a frame for a system message of type typ
// in room (none if empty), from "system", with a new ID of pod (none if pod
// is empty), up to its data, in a buffer sized for about extra more bytes: the frame is built in
// its own allocation, with no scratch buffer to copy from (one on the stack
// would add half a kilobyte to the frames of the handshake goroutine).
func sysHead(pod, typ, room string, extra int) []byte {
	b := make([]byte, sysReserve, sysReserve+sysFixed+len(pod)+len(incarnation)+len(typ)+len(room)+extra)
	b = append(b, '{')
	if pod != "" {
		b = append(b, `"id":"`...)
		start := len(b)
		b = appendMessageID(b, pod)
		if !plainJSON(b[start:]) { // a pod ID that needs escaping
			id := string(b[start:])
			b = appendJSONString(b[:start-1], id)
		} else {
			b = append(b, '"')
		}
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = appendJSONString(b, typ)
	if room != "" {
		b = append(b, `,"room":`...)
		b = appendJSONString(b, room)
	}
	return append(b, `,"from":"system","data":`...)
}

// sysFrame ends b, begun by sysHead and its data appended, with the
// timestamp now and the frame header, and returns the frame's wire bytes.
func sysFrame(b []byte, now time.Time) []byte {
	wire, _ := sysFrameHdr(b, now)
	return wire
}

// sysFrameHdr is sysFrame, also returning the frame header's length.
func sysFrameHdr(b []byte, now time.Time) (wire []byte, hdr int) {
	b = append(b, `,"timestamp":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	n := len(b) - sysReserve
	hdr = wsframe.HeaderLen(n)
	if hdr > sysReserve {
		wire = make([]byte, hdr+n)
		copy(wire[hdr:], b[sysReserve:])
	} else {
		wire = b[sysReserve-hdr:]
	}
	wsframe.PutHeader(wire, wsframe.OpText, n)
	return wire, hdr
}

// connectedFrame is the greeting: a system message of ConnectedData, with
// no ID (as SystemMessage makes it).
func connectedFrame(connID, userID string, expiresAt int64, now time.Time) []byte {
	extra := 53 + len(connID) + len(userID)
	if expiresAt != 0 {
		extra += 34
	}
	p := sysHead("", MessageTypeSystem, "", extra)
	p = append(p, `{"event":"connected","connection_id":`...)
	p = appendJSONString(p, connID)
	p = append(p, `,"user_id":`...)
	p = appendJSONString(p, userID)
	if expiresAt != 0 {
		p = append(p, `,"expires_at":`...)
		p = strconv.AppendInt(p, expiresAt, 10)
	}
	return sysFrame(append(p, '}'), now)
}

// joinAckFrame is a join's acknowledgement: a join message of JoinAckData.
func joinAckFrame(pod string, ack *JoinAckData, now time.Time) []byte {
	extra := 65 + len(ack.Room) + len(ack.UserID) + len(ack.Epoch)
	if ack.Recovered != nil {
		extra += 18
	}
	p := sysHead(pod, MessageTypeJoin, ack.Room, extra)
	p = append(p, `{"room":`...)
	p = appendJSONString(p, ack.Room)
	p = append(p, `,"user_id":`...)
	p = appendJSONString(p, ack.UserID)
	p = append(p, `,"offset":`...)
	p = strconv.AppendUint(p, ack.Offset, 10)
	p = append(p, `,"epoch":`...)
	p = appendJSONString(p, ack.Epoch)
	if ack.Recovered != nil {
		p = append(p, `,"recovered":`...)
		p = strconv.AppendBool(p, *ack.Recovered)
	}
	return sysFrame(append(p, '}'), now)
}

// eventFrame is the join or leave event (typ) of userID in room, a system
// message of JoinLeaveData, as a frame whose Message is decoded only if
// something asks for it (a Connection that is not a FrameSender, a
// Broadcaster that is not a Relayer): a join storm makes one per join.
func eventFrame(pod, typ, room, userID string, now time.Time) *Frame {
	p := sysHead(pod, typ, room, 24+len(room)+len(userID))
	p = append(p, `{"room":`...)
	p = appendJSONString(p, room)
	p = append(p, `,"user_id":`...)
	p = appendJSONString(p, userID)
	wire, hdr := sysFrameHdr(append(p, '}'), now)
	return &Frame{wire: wire, hdr: hdr, room: room}
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII without the characters it escapes is copied, anything else goes
// through encoding/json (rare: IDs and room names are plain).
func appendJSONString(b []byte, s string) []byte {
	if !plainJSON(s) {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainJSON reports whether encoding/json copies s into a JSON string
// unchanged (HTML characters included, which it escapes by default).
func plainJSON[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
