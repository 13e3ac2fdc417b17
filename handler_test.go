package realtime

import (
	"strings"
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

// A pod restarted with the same PodID (a new Handler) never gives a new
// connection the ID of one of its previous life: a direct message to the
// old connection would reach the new one.
func TestRestartedPodMintsNewConnectionIDs(t *testing.T) {
	var ids []string
	for range 2 {
		ts := newTestServer(t, rawDoor, HandlerConfig{PodID: "p1"})
		c := dial(t, ts.url, nil)
		assert.True(t, strings.HasPrefix(c.id, "p1."), "the ID names its pod: %q", c.id)
		assert.Equal(t, "p1", podOf(c.id))
		ids = append(ids, c.id)
	}
	assert.NotEqual(t, ids[0], ids[1], "both first connections of a pod p1")
}
