package realtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sameAsNewFrame checks that wire, a frame sysFrame made, holds the bytes
// NewFrame gives for the Message it encodes, with data's JSON as its Data
// and an ID if withID (the greeting has none: SystemMessage gives none).
func sameAsNewFrame(t *testing.T, wire []byte, withID bool, typ, room string, data any) {
	t.Helper()
	f := &Frame{wire: wire, hdr: len(wire) - len(payloadOf(wire))}
	var got Message
	require.NoError(t, json.Unmarshal(f.Payload(), &got), "%s", f.Payload())
	assert.Equal(t, withID, got.ID != "", "has an ID: %s", f.Payload())
	raw, err := json.Marshal(data)
	require.NoError(t, err)
	want, err := NewFrame(&Message{ID: got.ID, Type: typ, Room: room, From: "system", Data: raw, Timestamp: got.Timestamp})
	require.NoError(t, err)
	assert.Equal(t, string(want.wire), string(wire))
}

// payloadOf is an unmasked frame's payload.
func payloadOf(wire []byte) []byte {
	switch n := wire[1] & 0x7f; n {
	case 126:
		return wire[4:]
	case 127:
		return wire[10:]
	default:
		return wire[2:]
	}
}

func TestSystemFramesAreWhatNewFrameGives(t *testing.T) {
	now := time.Date(2026, 11, 27, 21, 30, 0, 120_000_000, time.UTC)
	odd := []string{"", "alice", `quote"and\back`, "<html>&amp;", "tab\tnew\nline", "é ü 日本", "\u2028sep", "bad\xffutf8", "\x00nul"}
	for _, pod := range []string{"p1", "pod<&>", `pod"q`} {
		for _, user := range odd {
			for _, exp := range []int64{0, 1_790_000_000} {
				wire := connectedFrame("p1-abc-1", user, exp, now)
				sameAsNewFrame(t, wire, false, MessageTypeSystem, "", ConnectedData{Event: "connected", ConnectionID: "p1-abc-1", UserID: user, ExpiresAt: exp})
			}
			for _, typ := range []string{MessageTypeJoin, MessageTypeLeave} {
				f := eventFrame(pod, typ, "room-1", user, now)
				sameAsNewFrame(t, f.wire, true, typ, "room-1", JoinLeaveData{Room: "room-1", UserID: user})
				assert.Equal(t, "room-1", f.room)
				m := f.Message() // decoded from the frame: nothing kept a Message
				assert.Equal(t, typ, m.Type)
				assert.Equal(t, "room-1", m.Room)
				assert.Equal(t, "system", m.From)
			}
			yes, no := true, false
			for _, rec := range []*bool{nil, &yes, &no} {
				for _, room := range []string{"lobby", "a.b:c-d_e", "room<1>"} {
					ack := JoinAckData{Room: room, UserID: user, Offset: 42, Epoch: "ep" + user, Recovered: rec}
					sameAsNewFrame(t, joinAckFrame(pod, &ack, now), true, MessageTypeJoin, room, ack)
				}
			}
		}
	}
	// A payload past 125 bytes has a longer header.
	long := string(make([]byte, 300))
	sameAsNewFrame(t, connectedFrame("c", long, 0, now.Add(time.Nanosecond)), false, MessageTypeSystem, "", ConnectedData{Event: "connected", ConnectionID: "c", UserID: long})
	sameAsNewFrame(t, connectedFrame("c", "u", 0, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), false, MessageTypeSystem, "", ConnectedData{Event: "connected", ConnectionID: "c", UserID: "u"})
}

// The greeting and the acknowledgement cost one allocation each, their
// frame; an event two, its frame and its Frame.
func TestSystemFramesAllocateOnlyTheFrame(t *testing.T) {
	now := time.Now().UTC()
	ack := JoinAckData{Room: "lobby", UserID: "alice", Offset: 7, Epoch: "e1"}
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { connectedFrame("p1-abc-1", "alice", 0, now) }))
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { joinAckFrame("p1", &ack, now) }))
	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() { eventFrame("p1", MessageTypeJoin, "lobby", "alice", now) }))
	// The sizes they are made with hold the longest plain message: a
	// 13-digit counter, a timestamp with nanoseconds, every optional field.
	seq := messageSeq.Load()
	messageSeq.Store(1<<63 - 1000)
	defer messageSeq.Store(seq + 1<<20) // past any ID minted meanwhile elsewhere: none is minted twice
	late := time.Date(2026, 11, 27, 21, 30, 0, 123456789, time.UTC)
	yes := true
	full := JoinAckData{Room: "lobby", UserID: "alice", Offset: 1<<64 - 1, Epoch: "e1", Recovered: &yes}
	assert.Equal(t, 1.0, testing.AllocsPerRun(10, func() { connectedFrame("p1-abc-1", "alice", -1<<63, late) }))
	assert.Equal(t, 1.0, testing.AllocsPerRun(10, func() { joinAckFrame("p1", &full, late) }))
	assert.Equal(t, 2.0, testing.AllocsPerRun(10, func() { eventFrame("p1", MessageTypeJoin, "lobby", "alice", late) }))
}
