package realtime

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Regression: the handler and the broadcaster minted IDs from two counters in
// the same "<pod>-<n>" form, so a client that de-duplicates by ID dropped real
// messages. Every message a client gets — client messages, join and presence
// events, and what Go code publishes through the broadcaster without an ID —
// must have an ID of its own, on both pods.
func TestMessageIDsUniqueAcrossPods(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	a1, b1 := dial(t, a.url, as("ua")), dial(t, b.url, as("ub"))
	a1.join("r")
	b1.join("r")
	waitListening(t, "r", a, b)
	const each = 20
	ctx := context.Background()
	for i := range each {
		a1.send(map[string]any{"type": "chat", "room": "r", "data": i})
		b1.send(map[string]any{"type": "chat", "room": "r", "data": i})
		a1.send(map[string]any{"type": "presence", "data": map[string]string{"status": "away"}})
		require.NoError(t, a.rb.Publish(ctx, &Message{Type: MessageTypeNotification, Room: "r", Data: json.RawMessage(`1`)}))
		require.NoError(t, b.rb.Publish(ctx, &Message{Type: MessageTypeNotification, Room: "r", Data: json.RawMessage(`2`)}))
	}
	// Each client gets 2×each chats, each presence events and 2×each
	// notifications, besides join events.
	for _, c := range []*client{a1, b1} {
		seen := map[string]Message{}
		want := 5 * each
		for got := 0; got < want; {
			m := c.read()
			require.NotEmpty(t, m.ID, "%+v", m)
			if old, dup := seen[m.ID]; dup {
				t.Fatalf("ID %q on two messages: %+v and %+v", m.ID, old, m)
			}
			seen[m.ID] = m
			switch m.Type {
			case MessageTypeChat, MessageTypePresence, MessageTypeNotification:
				got++
			}
		}
	}
}

// A message is JSON-encoded once in the whole system: the pod that publishes
// it encodes it for its own members and for the envelope; the other pods
// wrap the envelope's JSON in a frame without decoding or encoding it.
// Regression: the origin encoded twice and every other pod once more.
func TestPublishEncodesOncePerSystem(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	a1, b1 := dial(t, a.url, as("ua")), dial(t, b.url, as("ub"))
	a1.join("r")
	b1.join("r")
	waitListening(t, "r", a, b)
	a1.readType(MessageTypeJoin) // b1's join event, relayed through Redis
	before := frameEncodes.Load()
	require.NoError(t, a.rb.Publish(context.Background(), &Message{Type: MessageTypeNotification, Room: "r", Data: json.RawMessage(`"once"`)}))
	for _, c := range []*client{a1, b1} {
		m := c.readType(MessageTypeNotification)
		assert.Equal(t, `"once"`, string(m.Data))
	}
	assert.Equal(t, uint64(1), frameEncodes.Load()-before, "encodings for one message on two pods")
}

// A Connection that is not ours (no FrameSender, no *conn) works everywhere
// a connection can be: in a room that another pod's client publishes to, as
// the target of a direct message from another pod, and in the presence
// snapshot. Nothing panics; it gets the message decoded from the envelope.
func TestForeignConnectionAcrossPods(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	foreign := newPlain("b.foreign")
	b.hub.Register(foreign)
	b.hub.JoinRoom(foreign, "r")
	a1 := dial(t, a.url, as("ua"))
	a1.join("r")
	waitListening(t, "r", a, b)
	a1.send(map[string]any{"type": "chat", "room": "r", "data": "to the room"})
	a1.send(map[string]any{"type": "chat", "to": "b.foreign", "data": "to you"})
	require.Eventually(t, func() bool { return len(foreign.Received()) >= 3 }, 5*time.Second, 10*time.Millisecond)
	var datas []string
	for _, m := range foreign.Received() {
		datas = append(datas, m.Type+" "+string(m.Data))
		if m.Type == MessageTypeChat {
			assert.Equal(t, a1.id, m.From)
			assert.NotEmpty(t, m.ID)
		}
	}
	assert.Contains(t, datas, `chat "to the room"`)
	assert.Contains(t, datas, `chat "to you"`)
	users, rooms := b.rb.snapshot()
	assert.Equal(t, []string{"u-b.foreign"}, users)
	assert.Equal(t, map[string][]string{"r": {"u-b.foreign"}}, rooms)
}
