package realtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The JSON names are the wire protocol clients already speak: a rename must
// fail here.
func TestMessageJSONFieldNames(t *testing.T) {
	ts := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	msg := Message{ID: "1", Type: "chat", Room: "r", From: "c1", Data: json.RawMessage(`{"x":1}`), Timestamp: ts}
	b, err := json.Marshal(msg)
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"1","type":"chat","room":"r","from":"c1","data":{"x":1},"timestamp":"2026-11-27T05:00:00Z"}`, string(b))

	// omitempty on id, room, from, data; type and timestamp always present.
	b, err = json.Marshal(Message{Type: "ping"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"ping","timestamp":"0001-01-01T00:00:00Z"}`, string(b))

	var back Message
	require.NoError(t, json.Unmarshal([]byte(`{"id":"9","type":"t","room":"R","from":"F","data":[1],"timestamp":"2026-11-27T05:00:00Z"}`), &back))
	assert.Equal(t, Message{ID: "9", Type: "t", Room: "R", From: "F", Data: json.RawMessage(`[1]`), Timestamp: ts}, back)
}

func TestDataTypesJSON(t *testing.T) {
	b, err := json.Marshal(PresenceData{Status: PresenceAway, UserID: "u"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"status":"away","user_id":"u"}`, string(b))
	b, err = json.Marshal(JoinLeaveData{Room: "r", UserID: "u"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"room":"r","user_id":"u"}`, string(b))
}

func TestConstants(t *testing.T) {
	assert.Equal(t, []string{"chat", "presence", "notification", "system", "error", "ping", "pong"},
		[]string{MessageTypeChat, MessageTypePresence, MessageTypeNotification, MessageTypeSystem, MessageTypeError, MessageTypePing, MessageTypePong})
	assert.Equal(t, []string{"online", "offline", "away"}, []string{PresenceOnline, PresenceOffline, PresenceAway})
}

func TestSystemMessage(t *testing.T) {
	before := time.Now().UTC()
	msg, err := SystemMessage(MessageTypePresence, PresenceData{Status: PresenceOnline, UserID: "u"})
	require.NoError(t, err)
	assert.Equal(t, "presence", msg.Type)
	assert.Equal(t, "system", msg.From)
	assert.JSONEq(t, `{"status":"online","user_id":"u"}`, string(msg.Data))
	assert.Equal(t, time.UTC, msg.Timestamp.Location())
	assert.False(t, msg.Timestamp.Before(before))

	_, err = SystemMessage("x", func() {})
	assert.Error(t, err, "unencodable data is an error, not a panic")
}
