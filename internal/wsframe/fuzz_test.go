package wsframe

import (
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
)

// FuzzReader feeds arbitrary bytes whole and in two pieces split at an
// arbitrary point: the Reader must not panic, and both ways must yield the
// same messages and the same error.
func FuzzReader(f *testing.F) {
	f.Add(clientFrame(f, true, ws.OpText, []byte(`{"type":"join","room":"r"}`)), uint16(3), uint16(100))
	f.Add(append(clientFrame(f, false, ws.OpText, []byte("a")), clientFrame(f, true, ws.OpContinuation, []byte("b"))...), uint16(7), uint16(0))
	f.Add(clientFrame(f, true, ws.OpClose, ClosePayload(1000, "x")), uint16(1), uint16(10))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9}, uint16(2), uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, limit uint16) {
		at := int(split) % (len(data) + 1)
		run := func(chunks ...[]byte) ([]got, error) {
			r := Reader{MaxMessageSize: int(limit)}
			return collect(&r, chunks...)
		}
		whole, errWhole := run(data)
		parts, errParts := run(data[:at], data[at:])
		assert.Equal(t, whole, parts)
		assert.Equal(t, errWhole, errParts)
	})
}
