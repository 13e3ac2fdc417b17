package realtime

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSmokeChat(t *testing.T) {
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			ts := newTestServer(t, d, HandlerConfig{})
			a := dial(t, ts.url, nil)
			b := dial(t, ts.url, nil)
			a.join("lobby")
			b.join("lobby")
			ev := a.readType(MessageTypeJoin) // a sees b join
			assert.Equal(t, "lobby", ev.Room)
			a.send(map[string]any{"type": "chat", "room": "lobby", "data": map[string]string{"text": "hi"}})
			for _, c := range []*client{a, b} {
				m := c.readType(MessageTypeChat)
				assert.Equal(t, a.id, m.From)
				assert.Equal(t, "lobby", m.Room)
				assert.JSONEq(t, `{"text":"hi"}`, string(m.Data))
				assert.NotEmpty(t, m.ID)
				assert.False(t, m.Timestamp.IsZero())
			}
			require.Equal(t, 2, ts.hub.RoomCount("lobby"))
		})
	}
}
