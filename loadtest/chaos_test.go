package main

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

var testStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return testStart.Add(time.Duration(s * float64(time.Second))) }

func boolp(b bool) *bool { return &b }

// kinds counts a checker's anomalies by kind.
func kinds(c *checker) map[string]int {
	m := map[string]int{}
	for _, a := range c.anomalies {
		m[a.Kind]++
	}
	return m
}

// lostCount sums the lost ranges' offsets.
func lostCount(lost []lostRange) int {
	n := 0
	for _, r := range lost {
		n += int(r.To - r.From + 1)
	}
	return n
}

func feed(c *checker, epoch string, offsets ...uint64) {
	for _, o := range offsets {
		c.message(epoch, o, at(1))
	}
}

func TestCheckerCleanRun(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 10, Epoch: "A"}, false, at(0))
	feed(c, "A", 11, 12, 13, 14)
	lost := c.finish(roomEnd{Offset: 14, Epoch: "A", Known: true}, at(9))
	if len(c.anomalies) != 0 || len(lost) != 0 || c.delivered != 4 {
		t.Fatalf("anomalies %v, lost %v, delivered %d", c.anomalies, lost, c.delivered)
	}
	if off, ep, ok := c.position(); !ok || off != 14 || ep != "A" {
		t.Fatalf("position %d@%s %v", off, ep, ok)
	}
}

func TestCheckerGapDupOutOfOrder(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, 2, 5, 2, 3, 7)
	// 4 and 6 never came; 3 came late (out of order); 2 twice; the room
	// ended at 9, so 8 and 9 are lost too.
	lost := c.finish(roomEnd{Offset: 9, Epoch: "A", Known: true}, at(9))
	k := kinds(c)
	if k[anDup] != 1 || k[anOOO] != 1 || len(k) != 2 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
	if lostCount(lost) != 4 || len(lost) != 3 {
		t.Fatalf("lost %+v", lost)
	}
	if lost[0].From != 4 || lost[0].At != at(1) || !lost[2].At.IsZero() {
		t.Fatalf("lost %+v: 4 was noticed when 5 came; 8-9 only at the end", lost)
	}
}

func TestCheckerStaleAndBeforeAck(t *testing.T) {
	c := &checker{}
	c.message("A", 3, at(0))
	c.ack(joinAck{Offset: 5, Epoch: "A"}, false, at(0))
	feed(c, "A", 5, 4, 6)
	k := kinds(c)
	if k[anBeforeAck] != 1 || k[anStale] != 2 || c.delivered != 1 {
		t.Fatalf("anomalies %v, delivered %d", c.anomalies, c.delivered)
	}
}

func TestCheckerRecoveredTrueKeepsLedger(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, 2)
	// Dropped; rejoined with since 2@A; the replay follows.
	c.ack(joinAck{Offset: 2, Epoch: "A", Recovered: boolp(true)}, true, at(2))
	feed(c, "A", 3, 4, 5)
	lost := c.finish(roomEnd{Offset: 5, Epoch: "A", Known: true}, at(9))
	if len(c.anomalies) != 0 || len(lost) != 0 || len(c.ledgers) != 1 {
		t.Fatalf("anomalies %v, lost %v, ledgers %d", c.anomalies, lost, len(c.ledgers))
	}
	// A replay that starts over again is a duplicate.
	c.ack(joinAck{Offset: 5, Epoch: "A", Recovered: boolp(true)}, true, at(3))
	feed(c, "A", 5)
	if kinds(c)[anDup] != 1 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
}

func TestCheckerRecoveredFalseSameEpochSkips(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, 2)
	// Too old: the server skips 3..6 and says so.
	c.ack(joinAck{Offset: 6, Epoch: "A", Recovered: boolp(false)}, true, at(2))
	feed(c, "A", 7, 8)
	lost := c.finish(roomEnd{Offset: 8, Epoch: "A", Known: true}, at(9))
	if k := kinds(c); k[anRecFalse] != 1 || len(k) != 1 || len(lost) != 0 {
		t.Fatalf("anomalies %v, lost %v", c.anomalies, lost)
	}
	// A skipped offset delivered after all is out of order.
	feed(c, "A", 4)
	if kinds(c)[anOOO] != 1 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
}

func TestCheckerRecoveredFalseNewEpoch(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, 3) // 2 lost in epoch A
	c.ack(joinAck{Offset: 0, Epoch: "B", Recovered: boolp(false)}, true, at(2))
	feed(c, "B", 1, 2)
	lost := c.finish(roomEnd{Offset: 4, Epoch: "B", Known: true}, at(9))
	if k := kinds(c); k[anRecFalse] != 1 || len(k) != 1 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
	if len(lost) != 2 || lost[0].Epoch != "A" || lost[0].From != 2 || lost[1].Epoch != "B" || lost[1].From != 3 || lost[1].To != 4 {
		t.Fatalf("lost %+v", lost)
	}
}

func TestCheckerUnannouncedEpoch(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1)
	feed(c, "B", 1, 2) // another epoch, no recovered:false
	if k := kinds(c); k[anEpoch] != 1 || c.delivered != 3 {
		t.Fatalf("anomalies %v, delivered %d", c.anomalies, c.delivered)
	}
	// The room ended in epoch C: the client was never told.
	c.finish(roomEnd{Offset: 9, Epoch: "C", Known: true}, at(9))
	if k := kinds(c); k[anEpoch] != 2 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
}

func TestCheckerBadAcks(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1)
	c.ack(joinAck{Offset: 1, Epoch: "A"}, true, at(1))                         // since sent, no recovered
	c.ack(joinAck{Offset: 1, Epoch: "B", Recovered: boolp(true)}, true, at(2)) // recovered into another epoch
	if k := kinds(c); k[anBadAck] != 2 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
	if _, ep, _ := c.position(); ep != "B" {
		t.Fatalf("epoch %s", ep)
	}
}

func TestCheckerWildOffset(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, maxJump+10)
	if k := kinds(c); k[anWildOffset] != 1 || c.delivered != 1 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
}

func TestCheckerUnknownEndCountsOnlyGaps(t *testing.T) {
	c := &checker{}
	c.ack(joinAck{Offset: 100, Epoch: "A"}, false, at(0))
	feed(c, "A", 101, 103)
	lost := c.finish(roomEnd{}, at(9))
	if lostCount(lost) != 1 || lost[0].From != 102 {
		t.Fatalf("lost %+v", lost)
	}
}

func TestBackoffFullJitter(t *testing.T) {
	b := newBackoff()
	b.rnd = func(n int64) int64 { return n - 1 } // the top of each range
	var got []time.Duration
	for range 8 {
		got = append(got, b.next()+1)
	}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("step %d: %v, want %v", i, got[i], want[i]*time.Millisecond)
		}
	}
	b.reset()
	if d := b.next(); d >= 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestBackoffHonoursServer(t *testing.T) {
	b := newBackoff()
	b.rnd = func(n int64) int64 { return 0 }
	b.attempt = 5
	resp := &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": {"2"}}}
	if d := b.delayAfter(errors.New("bad handshake"), resp); d != 2*time.Second || b.attempt != 0 {
		t.Fatalf("503: %v, attempt %d", d, b.attempt)
	}
	ce := &websocket.CloseError{Code: websocket.CloseGoingAway, Text: "server shutting down; reconnect_ms=750"}
	if d := b.delayAfter(ce, nil); d != 750*time.Millisecond {
		t.Fatalf("1001 hint: %v", d)
	}
	ce = &websocket.CloseError{Code: websocket.CloseTryAgainLater, Text: "busy"}
	if d := b.delayAfter(ce, nil); d != time.Second {
		t.Fatalf("1013 without hint: %v", d)
	}
	if d := b.delayAfter(errors.New("EOF"), nil); d != 0 || b.attempt != 2 {
		t.Fatalf("plain drop: %v, attempt %d", d, b.attempt)
	}
}

func TestFaultAt(t *testing.T) {
	faults := []faultRec{{Kind: faultPodKill, Start: at(10)}, {Kind: faultClientDrop, Start: at(20)}}
	for _, c := range []struct {
		s    float64
		want string
	}{{5, "before-faults"}, {10, faultPodKill}, {19.9, faultPodKill}, {25, faultClientDrop}} {
		if got := faultAt(at(c.s), faults); got != c.want {
			t.Errorf("faultAt(%v) = %s, want %s", c.s, got, c.want)
		}
	}
}

func TestLastEnded(t *testing.T) {
	faults := []faultRec{{Kind: faultRedisRestart, EndMs: 2000}, {Kind: faultClientDrop, EndMs: 2100}, {Kind: faultRedisRestart, EndMs: 2200}}
	if got := lastEnded(at(2.15), testStart, faults); got != "client-drop +50ms, redis-restart +150ms" {
		t.Fatal(got)
	}
	if got := lastEnded(at(1), testStart, faults); got != "" {
		t.Fatal(got)
	}
}

func TestWireAck(t *testing.T) {
	m, d, err := parseWire([]byte(`{"type":"join","room":"chaos-1","from":"system","data":{"room":"chaos-1","user_id":"u1","offset":42,"epoch":"e1","recovered":false},"timestamp":"x"}`))
	if err != nil || m.Type != "join" || d.UserID != "u1" || d.Offset == nil || *d.Offset != 42 || d.Recovered == nil || *d.Recovered {
		t.Fatalf("%+v %+v %v", m, d, err)
	}
	m, d, _ = parseWire([]byte(`{"id":"x","type":"chat","room":"chaos-3","data":{"seq":7},"offset":43,"epoch":"e1"}`))
	if m.Offset == nil || *m.Offset != 43 || m.Epoch != "e1" || d.Seq == nil || *d.Seq != 7 {
		t.Fatalf("%+v %+v", m, d)
	}
	if got := string(joinFrame("r", 5, "e", true)); got != `{"type":"join","room":"r","data":{"since":{"offset":5,"epoch":"e"}}}` {
		t.Fatal(got)
	}
}

func TestTallyAddAndFailures(t *testing.T) {
	var k kindTally
	for _, kind := range []string{"lost", anDup, anOOO, anStale, anEpoch, anMismatch, anBadAck, anWildOffset, anRecFalse, anBeforeAck, anNoPosition} {
		k.add(kind, 2)
	}
	if k.failures() != 16 || k.RecoveredFalse != 2 || k.count(anBeforeAck) != 2 || k.count(anNoPosition) != 2 {
		t.Fatalf("%+v", k)
	}
}

func TestClientHandleFrames(t *testing.T) {
	book := newRoomBook()
	cl := newChaosClient(0, "u1", "chaos-1", "ws://x/ws", book)
	pubCl := newChaosClient(1, "pub-1", "chaos-1", "ws://x/ws", book)
	p := newPublisher(pubCl, time.Second)
	p.sentAt[7] = at(1)
	now := at(2)
	for _, f := range []string{
		`{"type":"system","data":{"event":"connected","connection_id":"pod0.1","user_id":"u1"}}`,
		`{"type":"join","room":"chaos-1","from":"system","data":{"room":"chaos-1","user_id":"u2"}}`, // another user's event
		`{"type":"join","room":"chaos-1","from":"system","data":{"room":"chaos-1","user_id":"u1","offset":5,"epoch":"E"}}`,
		`{"type":"join","room":"chaos-1","from":"system","data":{"room":"chaos-1","user_id":"u1","offset":5,"epoch":"E"}}`, // extra
		`{"type":"members_diff","room":"chaos-1","data":{}}`,
		`{"type":"chat","room":"chaos-1","data":{"seq":7},"offset":6,"epoch":"E"}`,
		`{"type":"chat","room":"chaos-1","data":{"seq":8},"offset":7,"epoch":"E"}`,
		`{"type":"error","data":{"code":"publish_failed","message":"x"}}`,
		`not json`,
	} {
		cl.handle([]byte(f), now)
	}
	if !cl.joined.Load() || cl.acks != 1 || cl.extraAcks != 1 || cl.ck.delivered != 2 || cl.badFrames != 1 || cl.errCodes["publish_failed"] != 1 {
		t.Fatalf("client: %+v", cl)
	}
	if len(cl.ck.anomalies) != 0 || cl.ck.conn != "pod0.1" {
		t.Fatalf("anomalies %v, conn %q", cl.ck.anomalies, cl.ck.conn)
	}
	// The publisher gets its message 7 back at offset 6; offset 7 carried
	// seq 9 for it, but seq 8 for u1: a mismatch.
	pubCl.handle([]byte(`{"type":"join","room":"chaos-1","data":{"user_id":"pub-1","offset":5,"epoch":"E"}}`), now)
	pubCl.handle([]byte(`{"type":"chat","room":"chaos-1","data":{"seq":7},"offset":6,"epoch":"E"}`), now)
	pubCl.handle([]byte(`{"type":"chat","room":"chaos-1","data":{"seq":9},"offset":7,"epoch":"E"}`), now)
	if p.acceptedCount() != 2 || book.sentAt("E", 6) != at(1) || kinds(&pubCl.ck)[anMismatch] != 1 {
		t.Fatalf("accepted %d, sent at %v, anomalies %v", p.acceptedCount(), book.sentAt("E", 6), pubCl.ck.anomalies)
	}
}

func TestClientLegacyAckThenRealAck(t *testing.T) {
	cl := newChaosClient(0, "u1", "r", "ws://x/ws", newRoomBook())
	cl.handle([]byte(`{"type":"join","room":"r","data":{"user_id":"u1"}}`), at(1))
	cl.handle([]byte(`{"type":"join","room":"r","data":{"user_id":"u1","offset":3,"epoch":"E"}}`), at(1))
	if cl.legacyAcks != 1 || cl.acks != 1 || cl.extraAcks != 0 {
		t.Fatalf("%+v", cl)
	}
	if off, ep, ok := cl.ck.position(); !ok || off != 3 || ep != "E" {
		t.Fatalf("position %d@%s", off, ep)
	}
}

func TestCheckerNoPositionAck(t *testing.T) {
	// recovered:false without a position (epoch ""): the next message of
	// the same epoch sets the position; what lies between is reported.
	c := &checker{}
	c.ack(joinAck{Offset: 0, Epoch: "A"}, false, at(0))
	feed(c, "A", 1, 2, 3)
	c.ack(joinAck{Offset: 0, Epoch: "", Recovered: boolp(false)}, true, at(2))
	if off, ep, _ := c.position(); off != 3 || ep != "A" {
		t.Fatalf("position while pending: %d@%s", off, ep)
	}
	feed(c, "A", 6, 7)
	lost := c.finish(roomEnd{Offset: 7, Epoch: "A", Known: true}, at(9))
	if k := kinds(c); k[anRecFalse] != 1 || k[anNoPosition] != 1 || len(k) != 2 || len(lost) != 0 {
		t.Fatalf("anomalies %v, lost %v", c.anomalies, lost)
	}
	// Again, and the server starts over below the position: duplicates.
	c.ack(joinAck{Offset: 0, Epoch: "", Recovered: boolp(false)}, true, at(3))
	feed(c, "A", 6, 8)
	if k := kinds(c); k[anDup] != 1 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
	// A fresh join without a position: the first message's epoch starts.
	f := &checker{}
	f.ack(joinAck{Offset: 0, Epoch: ""}, false, at(0))
	feed(f, "B", 5, 6)
	if k := kinds(f); k[anNoPosition] != 1 || len(k) != 1 || f.delivered != 2 {
		t.Fatalf("anomalies %v", f.anomalies)
	}
}

func TestCheckerRecoveredFalseBelowPositionDuplicates(t *testing.T) {
	// Seen in a run: since 86@E answered recovered:false at 83@E, then 84,
	// 85 and 86 again. The client had them: duplicates.
	c := &checker{}
	c.ack(joinAck{Offset: 80, Epoch: "E"}, false, at(0))
	feed(c, "E", 81, 82, 83, 84, 85, 86)
	c.ack(joinAck{Offset: 83, Epoch: "E", Recovered: boolp(false)}, true, at(2))
	feed(c, "E", 84, 85, 86, 87)
	if k := kinds(c); k[anDup] != 3 || k[anRecFalse] != 1 || len(k) != 2 {
		t.Fatalf("anomalies %v", c.anomalies)
	}
}
