package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// chatsUntil reads chat messages up to the one with data end, and checks
// that their offsets run on from after without a gap or a repeat.
func chatsUntil(t *testing.T, c *client, after uint64, end string) (last Message) {
	t.Helper()
	next := after + 1
	for {
		m := c.readType(MessageTypeChat)
		require.Equal(t, next, m.Offset, "offsets in order, no gap, no repeat (data %s)", m.Data)
		next++
		if string(m.Data) == end {
			return m
		}
	}
}

// senderAndReader starts pods a and b on srv, with a sender on a and a
// reader on b, both in room "r", and waits until both pods listen to it.
func senderAndReader(t *testing.T, srv *redistest.Server) (a, b *pod, sender, reader *client) {
	t.Helper()
	a = startPod(t, "a", redistest.Client(t, srv.Addr))
	b = startPod(t, "b", redistest.Client(t, srv.Addr))
	sender = dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	reader = dial(t, b.url, as("u"))
	reader.joinSince("r", nil)
	waitListening(t, "r", a, b)
	return a, b, sender, reader
}

func sendChats(c *client, room string, from, to int) {
	for i := from; i < to; i++ {
		c.send(map[string]any{"type": "chat", "room": room, "data": fmt.Sprint("m", i)})
	}
}

// Across pods: a client that rejoins, on its own pod or another, with the
// position of the last message it got receives what it missed, once and in
// order, then the live messages.
func TestRecoveryAcrossPods(t *testing.T) {
	srv := redistest.Start(t)
	a := startPod(t, "a", redistest.Client(t, srv.Addr))
	b := startPod(t, "b", redistest.Client(t, srv.Addr))
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	reader := dial(t, b.url, as("u"))
	ack := reader.joinSince("r", nil)
	assert.Zero(t, ack.Offset)
	waitListening(t, "r", a, b)
	sendChats(sender, "r", 0, 3)
	last := chatsUntil(t, reader, 0, `"m2"`)
	assert.Equal(t, ack.Epoch, last.Epoch)
	reader.ws.Close()

	sendChats(sender, "r", 3, 8) // missed
	chatsUntil(t, sender, 0, `"m7"`)
	for _, p := range []*pod{b, a} { // the same pod, and another
		back := dial(t, p.url, as("u"))
		ack := back.joinSince("r", &Position{Offset: last.Offset, Epoch: last.Epoch})
		require.NotNil(t, ack.Recovered, "pod %s", p.name)
		assert.True(t, *ack.Recovered, "pod %s", p.name)
		assert.Equal(t, uint64(8), ack.Offset)
		chatsUntil(t, back, last.Offset, `"m7"`)
		back.ws.Close()
	}
	// A pod that serves the room answers from memory: it reads Redis once
	// for the room, not once per join.
	assert.Equal(t, uint64(1), b.h.Stats().Recovered)
	assert.Equal(t, uint64(1), a.h.Stats().Recovered)
}

// Redis's pub/sub connections killed in the middle of a stream: the pods
// resubscribe, see the offsets jump (or are told of the resubscription),
// read the missing messages from the room's stream and deliver them in
// order before newer ones. Clients lose nothing and see nothing twice.
func TestGapRepairAfterPubsubKill(t *testing.T) {
	onSingleAndCluster(t, gapRepairAfterPubsubKill)
}

// onSingleAndCluster runs test against one redis-server and against a
// 3-master Redis Cluster; clients(i) is the client for pod i, admin reaches
// every node (Nodes).
func onSingleAndCluster(t *testing.T, test func(t *testing.T, admin rueidis.Client, clients func(i int) rueidis.Client)) {
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		test(t, redistest.Client(t, srv.Addr), func(int) rueidis.Client { return redistest.Client(t, srv.Addr) })
	})
	t.Run("cluster", func(t *testing.T) {
		addrs := redistest.StartCluster(t, 3)
		test(t, redistest.Client(t, addrs[0]), func(i int) rueidis.Client { return redistest.Client(t, addrs[i%len(addrs)]) })
	})
}

func gapRepairAfterPubsubKill(t *testing.T, admin rueidis.Client, clients func(i int) rueidis.Client) {
	a := startPod(t, "a", clients(0))
	b := startPod(t, "b", clients(1))
	sender := dial(t, a.url, as("s"))
	sender.joinSince("r", nil)
	readers := []*client{dial(t, a.url, as("ua")), dial(t, b.url, as("ub"))}
	for _, r := range readers {
		r.joinSince("r", nil)
	}
	waitListening(t, "r", a, b)
	const n = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			sender.send(map[string]any{"type": "chat", "room": "r", "data": fmt.Sprint("m", i)})
			if i%60 == 30 {
				for _, node := range admin.Nodes() {
					cmd := node.B().Arbitrary("CLIENT", "KILL", "TYPE", "pubsub").Build()
					assert.NoError(t, node.Do(context.Background(), cmd).Error())
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for _, r := range readers {
		chatsUntil(t, r, 0, fmt.Sprintf(`"m%d"`, n-1))
	}
	<-done
	st := b.rb.Stats()
	t.Logf("pod b: %d syncs, %d repaired, %d duplicates dropped, %d subscriptions", st.HistorySyncs, st.HistoryRepaired, st.HistoryDuplicates, st.Subscriptions)
	assert.Zero(t, st.HistoryHoles)
	assert.Greater(t, st.Subscriptions, uint64(2), "the kills made the pods resubscribe")
}

// Redis restarted with its data (AOF): offsets and epoch go on, and a
// client recovers across the restart. Restarted empty: the epoch changes,
// a rejoin with an old position gets recovered:false, never a silent hole.
func TestRedisRestartWithAndWithoutData(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprint("data=", keep), func(t *testing.T) {
			var extra []string
			if keep {
				extra = []string{"--appendonly", "yes", "--appendfsync", "always"}
			}
			srv := redistest.Start(t, extra...)
			a, b, sender, reader := senderAndReader(t, srv)
			sendChats(sender, "r", 0, 5)
			last := chatsUntil(t, reader, 0, `"m4"`)
			chatsUntil(t, sender, 0, `"m4"`)
			reader.ws.Close()

			srv.Kill()
			srv.Restart()
			require.Eventually(t, func() bool { return a.rb.Ready() == nil && b.rb.Ready() == nil }, 15*time.Second, 50*time.Millisecond)
			waitListening(t, "r", a) // b has no member left in r
			var m Message
			for i := 5; ; i++ { // until Redis takes it (the link may still be coming back)
				sender.send(map[string]any{"type": "chat", "room": "r", "data": fmt.Sprint("m", i)})
				m = sender.read()
				if m.Type == MessageTypeChat {
					break
				}
				require.Less(t, i, 50)
				time.Sleep(100 * time.Millisecond)
			}
			back := dial(t, b.url, as("u"))
			ack := back.joinSince("r", &Position{Offset: last.Offset, Epoch: last.Epoch})
			require.NotNil(t, ack.Recovered)
			if keep {
				assert.Equal(t, last.Epoch, m.Epoch, "same epoch")
				assert.Equal(t, uint64(6), m.Offset, "offsets go on")
				assert.True(t, *ack.Recovered)
				assert.Equal(t, string(m.Data), string(back.readChat().Data))
			} else {
				assert.NotEqual(t, last.Epoch, m.Epoch, "a new epoch")
				assert.Equal(t, uint64(1), m.Offset)
				assert.False(t, *ack.Recovered, "history was lost: told so")
				assert.Equal(t, m.Epoch, ack.Epoch)
			}
		})
	}
}

// The stream of a room holds at most the history size; a position older
// than that is not recovered.
func TestRedisHistoryBounds(t *testing.T) {
	srv := redistest.Start(t)
	client := redistest.Client(t, srv.Addr)
	a := startPod(t, "a", client, WithHistory(5, time.Minute))
	s := dial(t, a.url, as("s"))
	epoch := s.joinSince("r", nil).Epoch
	sendChats(s, "r", 0, 12)
	chatsUntil(t, s, 0, `"m11"`)
	n, err := client.Do(context.Background(), client.B().Xlen().Key(a.rb.bus.HistoryKeys("r")[0]).Build()).AsInt64()
	require.NoError(t, err)
	assert.LessOrEqual(t, n, int64(5+100), "trimmed by whole nodes (MINID ~); reads keep the last 5 exactly")
	ttl, err := client.Do(context.Background(), client.B().Pttl().Key(a.rb.bus.HistoryKeys("r")[0]).Build()).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, time.Minute.Milliseconds(), ttl, 5000, "the stream expires a TTL after its last message")

	other := startPod(t, "b", redistest.Client(t, srv.Addr), WithHistory(5, time.Minute))
	ack := dial(t, other.url, as("u")).joinSince("r", &Position{Offset: 6, Epoch: epoch})
	assert.False(t, *ack.Recovered, "7..12 asked, 8..12 kept")
	c := dial(t, other.url, as("v"))
	ack = c.joinSince("r", &Position{Offset: 7, Epoch: epoch})
	assert.True(t, *ack.Recovered)
	chatsUntil(t, c, 7, `"m11"`)
}

// Messages to a user's personal room reach the user's connections on every
// pod, and a device that was away recovers them on any pod.
func TestUserRoomAcrossPods(t *testing.T) {
	onSingleAndCluster(t, func(t *testing.T, _ rueidis.Client, clients func(i int) rueidis.Client) {
		userRoomAcrossPods(t, clients(0), clients(1))
	})
}

func userRoomAcrossPods(t *testing.T, ca, cb rueidis.Client) {
	a := startPod(t, "a", ca)
	b := startPod(t, "b", cb)
	room := UserRoom("alice")
	phone, laptop := dial(t, a.url, as("alice")), dial(t, b.url, as("alice"))
	phone.joinSince(room, nil)
	ack := laptop.joinSince(room, nil)
	waitListening(t, room, a, b)
	laptop.ws.Close()
	for i := range 3 {
		data, _ := json.Marshal(i)
		msg := &Message{Type: "dm", Room: room, Data: data}
		require.NoError(t, a.h.Publish(context.Background(), msg))
		assert.Equal(t, uint64(i+1), msg.Offset, "Publish tells the message's place")
	}
	for i := range 3 {
		m := phone.readType("dm")
		assert.Equal(t, uint64(i+1), m.Offset)
	}
	back := dial(t, a.url, as("alice"))
	ack = back.joinSince(room, &Position{Offset: ack.Offset, Epoch: ack.Epoch})
	assert.True(t, *ack.Recovered)
	for i := range 3 {
		assert.Equal(t, fmt.Sprint(i), string(back.readType("dm").Data))
	}
	bob := dial(t, b.url, as("bob"))
	bob.send(map[string]any{"type": "join", "room": room})
	assert.Equal(t, ErrCodeForbidden, bob.readError())
}

// The same on a 3-master Redis Cluster: the script's keys and the
// partition channel share a slot.
func TestRecoveryCluster(t *testing.T) {
	addrs := redistest.StartCluster(t, 3)
	var pods []*pod
	for i := range 2 {
		pods = append(pods, startPod(t, fmt.Sprint("p", i), redistest.Client(t, addrs[i])))
	}
	for r := range 4 { // rooms in several slots
		room := fmt.Sprint("room", r)
		sender := dial(t, pods[0].url, as("s"))
		sender.joinSince(room, nil)
		reader := dial(t, pods[1].url, as("u"))
		reader.joinSince(room, nil)
		waitListening(t, room, pods...)
		sendChats(sender, room, 0, 3)
		last := chatsUntil(t, reader, 0, `"m2"`)
		reader.ws.Close()
		sendChats(sender, room, 3, 6)
		chatsUntil(t, sender, 0, `"m5"`)
		back := dial(t, pods[1].url, as("u"))
		ack := back.joinSince(room, &Position{Offset: last.Offset, Epoch: last.Epoch})
		assert.True(t, *ack.Recovered)
		chatsUntil(t, back, 3, `"m5"`)
	}
}
