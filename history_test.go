package realtime

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// joinSince joins room with a since position (nil: none) and returns the
// acknowledgement's data.
func (c *client) joinSince(room string, since *Position) JoinAckData {
	c.t.Helper()
	req := map[string]any{"type": "join", "room": room}
	if since != nil {
		req["data"] = map[string]any{"since": since}
	}
	c.send(req)
	for range 200 {
		m := c.readType(MessageTypeJoin)
		var ack JoinAckData
		require.NoError(c.t, json.Unmarshal(m.Data, &ack))
		if m.Room == room && ack.Epoch != "" {
			return ack
		}
	}
	c.t.Fatal("no join acknowledgement")
	return JoinAckData{}
}

// readChat returns the next chat message.
func (c *client) readChat() Message {
	c.t.Helper()
	return c.readType(MessageTypeChat)
}

func historyServer(t *testing.T, d door, cfg HandlerConfig) *testServer {
	cfg.Authenticate = func(r *http.Request) (string, error) { return r.Header.Get("X-User"), nil }
	cfg.RateLimit = -1
	return newTestServer(t, d, cfg)
}

// On one pod: messages get consecutive offsets; a client that rejoins with
// the last position it saw gets exactly what it missed, in order, and then
// the live messages; a position from another epoch or too old gets
// recovered:false and no replay.
func TestRecoveryOnOnePod(t *testing.T) {
	for _, d := range doors {
		t.Run(string(d), func(t *testing.T) {
			ts := historyServer(t, d, HandlerConfig{HistorySize: 10})
			sender := dial(t, ts.url, as("s"))
			ack := sender.joinSince("r", nil)
			assert.Zero(t, ack.Offset)
			assert.Nil(t, ack.Recovered, "no since, no recovered")
			epoch := ack.Epoch

			reader := dial(t, ts.url, as("u"))
			reader.joinSince("r", nil)
			for i := range 3 {
				sender.send(map[string]any{"type": "chat", "room": "r", "data": i})
			}
			var last Message
			for i := range 3 {
				last = reader.readChat()
				assert.Equal(t, uint64(i+1), last.Offset)
				assert.Equal(t, epoch, last.Epoch)
			}
			reader.ws.Close()

			for i := 3; i < 8; i++ { // missed while away
				sender.send(map[string]any{"type": "chat", "room": "r", "data": i})
			}
			sender.readChat() // the sender's own copies arrive in order; wait for the last
			for range 7 {
				sender.readChat()
			}
			back := dial(t, ts.url, as("u"))
			ack = back.joinSince("r", &Position{Offset: last.Offset, Epoch: last.Epoch})
			require.NotNil(t, ack.Recovered)
			assert.True(t, *ack.Recovered)
			assert.Equal(t, uint64(8), ack.Offset)
			sender.send(map[string]any{"type": "chat", "room": "r", "data": 8}) // live, after the replay
			for i := 3; i <= 8; i++ {
				m := back.readChat()
				assert.Equal(t, uint64(i+1), m.Offset)
				assert.Equal(t, fmt.Sprint(i), string(m.Data))
			}

			other := dial(t, ts.url, as("v"))
			ack = other.joinSince("r", &Position{Offset: 2, Epoch: "another"})
			require.NotNil(t, ack.Recovered)
			assert.False(t, *ack.Recovered, "another epoch")
			ack = dial(t, ts.url, as("w")).joinSince("r", &Position{Offset: 9, Epoch: "x"})
			assert.False(t, *ack.Recovered)
			assert.Equal(t, uint64(9), ack.Offset)
			assert.Equal(t, uint64(2), ts.handler.Stats().NotRecovered)
			assert.Equal(t, uint64(1), ts.handler.Stats().Recovered)
		})
	}
}

// Past HistorySize, a position is too old to recover.
func TestRecoveryTooOld(t *testing.T) {
	ts := historyServer(t, httpDoor, HandlerConfig{HistorySize: 3})
	s := dial(t, ts.url, as("s"))
	epoch := s.joinSince("r", nil).Epoch
	for i := range 5 {
		s.send(map[string]any{"type": "chat", "room": "r", "data": i})
	}
	for range 5 {
		s.readChat()
	}
	ack := dial(t, ts.url, as("u")).joinSince("r", &Position{Offset: 1, Epoch: epoch})
	assert.False(t, *ack.Recovered, "offsets 2..5 asked, 3..5 kept")
	c := dial(t, ts.url, as("v"))
	ack = c.joinSince("r", &Position{Offset: 2, Epoch: epoch})
	assert.True(t, *ack.Recovered)
	for i := 3; i <= 5; i++ {
		assert.Equal(t, uint64(i), c.readChat().Offset)
	}
}

// Events carry no offset and do not enter history; HistorySize -1 turns
// history off (no offsets, the join event is the acknowledgement).
func TestHistoryEventsAndOff(t *testing.T) {
	ts := historyServer(t, httpDoor, HandlerConfig{})
	a := dial(t, ts.url, as("a"))
	a.joinSince("r", nil)
	b := dial(t, ts.url, as("b"))
	b.joinSince("r", nil)
	ev := a.readType(MessageTypeJoin)
	assert.Zero(t, ev.Offset, "a join event is not kept")
	assert.Contains(t, string(ev.Data), `"b"`)
	b.send(map[string]any{"type": "chat", "room": "r", "data": 1})
	assert.Equal(t, uint64(1), a.readChat().Offset)

	off := historyServer(t, httpDoor, HandlerConfig{HistorySize: -1})
	c := dial(t, off.url, as("c"))
	c.join("r")
	c.send(map[string]any{"type": "chat", "room": "r", "data": 1})
	m := c.readChat()
	assert.Zero(t, m.Offset)
	assert.Empty(t, m.Epoch)
}

// A personal room: only its user may join it; a message to it reaches each
// of the user's connections that joined, and is recovered like any.
func TestUserRoom(t *testing.T) {
	ts := historyServer(t, httpDoor, HandlerConfig{})
	mallory := dial(t, ts.url, as("mallory"))
	mallory.send(map[string]any{"type": "join", "room": UserRoom("alice")})
	assert.Equal(t, ErrCodeForbidden, mallory.readError())
	anon := dial(t, ts.url, nil)
	anon.send(map[string]any{"type": "join", "room": "~"})
	assert.Equal(t, ErrCodeBadRoom, anon.readError())

	phone, laptop := dial(t, ts.url, as("alice")), dial(t, ts.url, as("alice"))
	phone.joinSince(UserRoom("alice"), nil)
	ack := laptop.joinSince(UserRoom("alice"), nil)
	laptop.ws.Close()
	msg := &Message{Type: "notification", Room: UserRoom("alice"), Data: json.RawMessage(`"hi"`)}
	require.NoError(t, ts.handler.Publish(t.Context(), msg))
	m := phone.readType("notification")
	assert.Equal(t, uint64(1), m.Offset)
	back := dial(t, ts.url, as("alice"))
	ack = back.joinSince(UserRoom("alice"), &Position{Offset: ack.Offset, Epoch: ack.Epoch})
	assert.True(t, *ack.Recovered)
	assert.Equal(t, `"hi"`, string(back.readType("notification").Data))
}

var _ = time.Second

// A message that does not encode is refused with ErrEncode and takes no
// place: the room's next message gets the next offset (it used to be
// delivered as {} with an offset).
func TestPublishBadDataTakesNoOffset(t *testing.T) {
	ts := historyServer(t, httpDoor, HandlerConfig{})
	c := dial(t, ts.url, as("u"))
	c.joinSince("r", nil)
	err := ts.handler.Publish(t.Context(), &Message{Type: "notification", Room: "r", Data: json.RawMessage(`{not json`)})
	require.ErrorIs(t, err, ErrEncode)
	require.NoError(t, ts.handler.Publish(t.Context(), &Message{Type: "notification", Room: "r", Data: json.RawMessage(`1`)}))
	m := c.readType("notification")
	assert.Equal(t, uint64(1), m.Offset)
	assert.Equal(t, `1`, string(m.Data))
}
