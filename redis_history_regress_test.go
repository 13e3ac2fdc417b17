package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Regression tests for what a review of the history found; each failed on
// the code before its fix.

// chats reads c in a goroutine of its own and hands over its chat
// messages: waiting on the channel with a time-out leaves the connection
// usable, which a read deadline on a gorilla connection does not.
func chats(c *client) <-chan Message {
	ch := make(chan Message, 1024)
	go func() {
		defer close(ch)
		for {
			c.ws.SetReadDeadline(time.Time{})
			_, b, err := c.ws.ReadMessage()
			if err != nil {
				return
			}
			var m Message
			if json.Unmarshal(b, &m) == nil && m.Type == MessageTypeChat {
				ch <- m
			}
		}
	}()
	return ch
}

// next returns the next chat message from ch within d, or false.
func next(ch <-chan Message, d time.Duration) (Message, bool) {
	select {
	case m, ok := <-ch:
		return m, ok
	case <-time.After(d):
		return Message{}, false
	}
}

// tryChat returns the next chat message of c within d, or false; c is not
// usable after a time-out (use chats to read on).
func tryChat(c *client, d time.Duration) (Message, bool) {
	deadline := time.Now().Add(d)
	for {
		c.ws.SetReadDeadline(deadline)
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return Message{}, false
		}
		var m Message
		json.Unmarshal(b, &m)
		if m.Type == MessageTypeChat {
			return m, true
		}
	}
}

// A message published while a join of a room new to the pod is being read
// (after the read, before the joiner is a member) was skipped (no member
// yet): the pod stayed behind until a later message showed it missing, and
// told joiners a position without it. Now the pod takes it: the joiner is
// placed after it, and a rejoin from before it gets it.
func TestMessageDuringJoinReadIsDelivered(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	sendChats(sender, "r", 0, 3)
	chatsUntil(t, sender, 0, `"m2"`)
	other := "" // a room of r's partition, so that b listens to it already
	for i := 0; other == ""; i++ {
		if name := fmt.Sprint("x", i); b.rb.bus.Partition(name) == b.rb.bus.Partition("r") {
			other = name
		}
	}
	dial(t, b.url, as("w")).joinSince(other, nil)
	waitListening(t, other, b)

	// The hook runs on b's goroutine: it reports, the test checks (require
	// there would stop the wrong goroutine), and it gives up well within the
	// joiner's 5 s read.
	hookErr := make(chan error, 1)
	hook := func() {
		// offset 4, published after b read the room
		err := sender.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","room":"r","data":"m3"}`))
		// Until b has taken it from Redis into its log of the room. (Waiting
		// for its bus to receive something, then 100 ms, failed under load:
		// the envelope received could be another, or handled later.)
		for deadline := time.Now().Add(3 * time.Second); err == nil; time.Sleep(10 * time.Millisecond) {
			if pos, known, _ := b.rb.hist.log.Position("r"); known && pos.Offset >= 4 {
				break
			}
			if time.Now().After(deadline) {
				err = errors.New("b never took in the message published during the join's read")
			}
		}
		hookErr <- err
	}
	b.rb.hist.afterJoinRead.Store(&hook)
	reader := dial(t, b.url, as("u"))
	ack := reader.joinSince("r", nil)
	select {
	case err := <-hookErr:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the join never read Redis (the hook did not run)")
	}
	chatsUntil(t, sender, 3, `"m3"`) // the sender's own copy: accepted at offset 4
	assert.Equal(t, uint64(4), ack.Offset, "the pod is not behind")
	late := dial(t, b.url, as("v"))
	lack := late.joinSince("r", &Position{Offset: 3, Epoch: ack.Epoch})
	require.True(t, *lack.Recovered)
	m, ok := tryChat(late, 3*time.Second)
	require.True(t, ok, "the message published meanwhile is replayed")
	assert.Equal(t, `"m3"`, string(m.Data))
}

// Redis restarted from a snapshot that lacks its last appends: same epoch,
// offsets going back. The pods took the new messages at those offsets for
// copies of delivered ones and dropped them, and a rejoin was told
// recovered:true. Now the room starts a new epoch: nothing is dropped as a
// copy, and a rejoin from before is told recovered:false.
func TestRedisLosingRecentWritesStartsNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv.Addr)
	a, b, sender, reader := senderAndReader(t, srv)
	sendChats(sender, "r", 0, 3)
	chatsUntil(t, reader, 0, `"m2"`)
	require.NoError(t, admin.Do(context.Background(), admin.B().Save().Build()).Error()) // snapshot at offset 3
	sendChats(sender, "r", 3, 5)
	last := chatsUntil(t, reader, 0+3, `"m4"`)
	chatsUntil(t, sender, 0, `"m4"`)
	srv.Kill()
	srv.Restart() // loads the snapshot: offset 3, the same epoch
	require.Eventually(t, func() bool { return a.rb.Ready() == nil && b.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond)
	waitListening(t, "r", a, b)

	var got Message
	in := chats(reader)
	for i := 5; got.Epoch == "" || got.Epoch == last.Epoch; i++ {
		require.Less(t, i, 60, "the room goes on in a new epoch")
		sendChats(sender, "r", i, i+1)
		if m, ok := next(in, 300*time.Millisecond); ok {
			require.NotEqual(t, last.Epoch, m.Epoch, "nothing more in the old epoch: its offsets 4 and 5 were delivered already")
			got = m
		}
	}
	back := dial(t, b.url, as("u2"))
	ack := back.joinSince("r", &Position{Offset: last.Offset, Epoch: last.Epoch})
	assert.False(t, *ack.Recovered, "history was lost: told so")
	assert.NotZero(t, a.rb.Stats().HistoryRegressions+b.rb.Stats().HistoryRegressions)
}

// A leave sent while the join waits for Redis cancels the join.
func TestLeaveCancelsJoinWaitingForRedis(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	c := dial(t, b.url, as("u"))
	srv.Stop() // the join waits for Redis
	c.send(map[string]any{"type": "join", "room": "r"})
	c.send(map[string]any{"type": "leave", "room": "r"})
	left := c.readType(MessageTypeLeave)
	assert.Equal(t, "r", left.Room, "the leave is acknowledged")
	srv.Continue()
	require.Eventually(t, func() bool { return b.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second) // the join's read is done by now
	sendChats(sender, "r", 0, 1)
	_, ok := tryChat(c, 2*time.Second)
	assert.False(t, ok, "a client that left gets nothing of the room")
}

// A join read while this pod still had the room in an older epoch read the
// new epoch only after the old offset, and gave up messages Redis had.
func TestJoinInStaleEpochReadsAll(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	sender := dial(t, a.url, as("s"))
	ack := sender.joinSince("r", nil)
	member := dial(t, b.url, as("m"))
	member.joinSince("r", nil)
	waitListening(t, "r", a, b)
	sendChats(sender, "r", 0, 3)
	chatsUntil(t, member, 0, `"m2"`)
	here, _, _ := b.rb.hist.log.Position("r")
	b.rb.hist.log.Sync("r", here, Position{Offset: 50, Epoch: "0000"}, nil, nil, nil) // as if b had not seen Redis lose the room
	holes := b.rb.Stats().HistoryHoles
	joiner := dial(t, b.url, as("u"))
	jack := joiner.joinSince("r", &Position{Offset: 1, Epoch: ack.Epoch})
	assert.True(t, *jack.Recovered, "Redis keeps 2..3")
	assert.Equal(t, holes, b.rb.Stats().HistoryHoles, "nothing Redis has is given up")
}

// An entry of a stream holds one batch of a room (up to 128 messages):
// trimmed by count of entries, a stream kept far more than the history size.
func TestStreamKeepsAboutSizeMessages(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv.Addr)
	a := startPod(t, "a", redistest.Client(t, srv.Addr), WithHistory(10, time.Minute))
	var senders []*client
	for i := range 20 {
		c := dial(t, a.url, as(fmt.Sprint("s", i)))
		c.joinSince("r", nil)
		senders = append(senders, c)
	}
	done := make(chan struct{})
	for i, c := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := range 100 {
				b, _ := json.Marshal(map[string]any{"type": "chat", "room": "r", "data": fmt.Sprint(i, "-", k)})
				c.ws.WriteMessage(websocket.TextMessage, b)
			}
		}()
	}
	for range senders {
		<-done
	}
	var last uint64
	require.Eventually(t, func() bool { // until the room stops moving
		off, _, _ := a.rb.hist.log.Position("r")
		settled := off.Offset == last && off.Offset > 500
		last = off.Offset
		return settled
	}, 20*time.Second, 300*time.Millisecond)
	raw, err := admin.Do(context.Background(), admin.B().Xrange().Key(a.rb.bus.HistoryKeys("r")[0]).Start("-").End("+").Build()).ToArray()
	require.NoError(t, err)
	msgs := 0
	for _, e := range raw {
		parts, _ := e.ToArray()
		fields, _ := parts[1].ToArray()
		for i := 0; i+1 < len(fields); i += 2 {
			if name, _ := fields[i].ToString(); name == "n" {
				n, _ := fields[i+1].AsInt64()
				msgs += int(n)
			}
		}
	}
	t.Logf("history size 10: the stream holds %d messages in %d entries", msgs, len(raw))
	assert.LessOrEqual(t, msgs, 10+2*128+100, "about the size: whole nodes and the last batch's entry go at once")
}

// Redis loses a room's position without a restart (its 24-hour TTL ran out
// on a quiet room whose members stayed, eviction, FLUSHDB): the next append
// starts a new epoch at offset 1. Every pod dropped those messages as of an
// unknown epoch and never read the room again, so the room went silent.
func TestNewEpochWithoutRestartIsDelivered(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv.Addr)
	a, _, sender, reader := senderAndReader(t, srv)
	sendChats(sender, "r", 0, 3)
	chatsUntil(t, reader, 0, `"m2"`)
	last := chatsUntil(t, sender, 0, `"m2"`)
	require.NoError(t, admin.Do(context.Background(), admin.B().Del().Key(a.rb.bus.HistoryKeys("r")...).Build()).Error())
	fromSender, fromReader := chats(sender), chats(reader)
	for i := 3; i < 8; i++ {
		sendChats(sender, "r", i, i+1)
		time.Sleep(50 * time.Millisecond)
	}
	for _, in := range []<-chan Message{fromSender, fromReader} {
		for i := 3; i < 8; i++ {
			m, ok := next(in, 3*time.Second)
			require.True(t, ok, "m%d arrives", i)
			assert.Equal(t, fmt.Sprintf(`"m%d"`, i), string(m.Data))
			assert.Equal(t, uint64(i-2), m.Offset, "the new epoch counts from 1")
			assert.NotEqual(t, last.Epoch, m.Epoch)
		}
	}
}

// One Message published to two rooms: Publish had set its place in the
// first, and the second room's members were told that place.
func TestMessagePublishedAgainGetsItsNewPlace(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	c := dial(t, a.url, as("u"))
	c.joinSince("r1", nil)
	ack2 := c.joinSince("r2", nil)
	waitListening(t, "r1", a)
	waitListening(t, "r2", a)
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r1", nil)
	sendChats(sender, "r1", 0, 5) // r1 at offset 5
	chatsUntil(t, c, 0, `"m4"`)
	msg := &Message{Type: "chat", Room: "r1", Data: []byte(`"x"`)}
	require.NoError(t, a.h.Publish(context.Background(), msg))
	msg.Room, msg.ID = "r2", ""
	require.NoError(t, a.h.Publish(context.Background(), msg))
	assert.Equal(t, uint64(1), msg.Offset)
	c.readType(MessageTypeChat) // r1's
	m2 := c.readType(MessageTypeChat)
	assert.Equal(t, "r2", m2.Room)
	assert.Equal(t, uint64(1), m2.Offset, "r2's offset")
	assert.Equal(t, ack2.Epoch, m2.Epoch)
}

// An append whose reply was lost to a time-out (Redis stalled, then ran the
// script): the other pods deliver it; the sender's pod, which skips its own
// envelopes, reads the room and delivers it too, without a later message.
//
// Redis is stalled (DEBUG SLEEP), not paused (CLIENT PAUSE). A paused Redis
// has read the append and drops it if its connection closes, and rueidis
// closes the connection of a command that times out when that connection
// has no background worker yet (its synchronous path: no subscription on
// it, never two commands at once; a client has GOMAXPROCS-dependent
// connections, 2 here, and picks one at random per command), so with a
// pause the script ran or not by chance: when not, nobody got m2 and the
// test failed (9 runs in 20 with -cpu 4, about 1 in 40 with 2, on a busy
// machine). A stalled Redis reads the append only after the stall, and
// runs it even if the connection closed meanwhile.
func TestTimedOutAppendIsDeliveredLocally(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	admin := redistest.Client(t, srv.Addr)
	a := startPodWith(t, "a", redistest.Client(t, srv.Addr), HandlerConfig{PublishTimeout: 100 * time.Millisecond})
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	local := dial(t, a.url, as("l"))
	local.joinSince("r", nil)
	remote := dial(t, b.url, as("u"))
	remote.joinSince("r", nil)
	waitListening(t, "r", a, b)
	sendChats(sender, "r", 0, 2)
	chatsUntil(t, local, 0, `"m1"`)
	chatsUntil(t, remote, 0, `"m1"`)
	probe := redistest.Client(t, srv.Addr) // made before the stall, which a new client's handshake would wait out
	stalled := make(chan error, 1)
	go func() {
		stalled <- admin.Do(context.Background(), admin.B().Arbitrary("DEBUG", "SLEEP", "0.6").Build()).Error()
	}()
	require.Eventually(t, func() bool { // the stall has begun: a PING goes unanswered
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return probe.Do(ctx, probe.B().Ping().Build()).Error() != nil
	}, 5*time.Second, time.Millisecond)
	sendChats(sender, "r", 2, 3)
	assert.Equal(t, ErrCodePublishFailed, sender.readError(), "not confirmed in time")
	require.NoError(t, <-stalled)
	for _, c := range []*client{remote, local} {
		m, ok := next(chats(c), 20*time.Second) // the second read comes historyTimeout (5 s) later; -race and a busy machine stretch it
		require.True(t, ok)
		assert.Equal(t, `"m2"`, string(m.Data))
	}
	last, err := admin.Do(context.Background(), admin.B().Hget().Key(a.rb.bus.HistoryKeys("r")[1]).Field("o").Build()).AsUint64()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), last, "the script ran once")
}
