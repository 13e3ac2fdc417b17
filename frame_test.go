package realtime

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Frames are checked with gobwas/ws's reader, an independent parser, at each
// length-encoding boundary of RFC 6455 §5.2.
func TestNewFrameIsOneTextFrame(t *testing.T) {
	for _, size := range []int{0, 50, 100, 125, 126, 200, 65535, 65536, 70000} {
		msg := &Message{Type: "chat", Data: json.RawMessage(`"` + strings.Repeat("x", size) + `"`)}
		f, err := NewFrame(msg)
		require.NoError(t, err)
		want, err := json.Marshal(msg)
		require.NoError(t, err)

		r := bytes.NewReader(f.Wire())
		h, err := ws.ReadHeader(r)
		require.NoError(t, err, "size %d", size)
		assert.True(t, h.Fin)
		assert.Equal(t, ws.OpText, h.OpCode)
		assert.False(t, h.Masked, "server frames are not masked")
		assert.EqualValues(t, len(want), h.Length)
		assert.Equal(t, want, f.Wire()[len(f.Wire())-r.Len():], "payload follows the header, nothing after it")
		assert.Equal(t, want, f.Payload())
		assert.Same(t, msg, f.Message())
	}
}

func TestNewFrameError(t *testing.T) {
	_, err := NewFrame(&Message{Type: "chat", Data: json.RawMessage(`{not json`)})
	assert.ErrorIs(t, err, ErrEncode)
	assert.ErrorContains(t, err, `type "chat"`)
}

// A frame made from JSON (as a receiving pod makes it) carries the bytes
// unchanged, and decodes the message only when asked.
func TestNewFrameJSON(t *testing.T) {
	msg := &Message{ID: "p-x-1", Type: "chat", Room: "r", From: "p.1", Data: json.RawMessage(`{"text":"hi"}`)}
	orig, err := NewFrame(msg)
	require.NoError(t, err)
	f, err := NewFrameJSON(orig.Payload())
	require.NoError(t, err)
	assert.Equal(t, orig.Wire(), f.Wire(), "the same bytes on every pod")
	assert.Equal(t, msg.Room, f.Message().Room)
	assert.Equal(t, msg.Data, f.Message().Data)
	assert.Same(t, f.Message(), f.Message(), "decoded once")

	_, err = NewFrameJSON([]byte(`{"type":`))
	assert.ErrorIs(t, err, ErrFrameJSON)
}
