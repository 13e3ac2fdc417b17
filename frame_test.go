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
	assert.ErrorContains(t, err, `encode "chat" message`)
}
