package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// This file is what -chaos's connections say and hear, and what a room's
// messages carried, shared by every member of the room.

// wireMsg is a server message, as far as -chaos reads it.
type wireMsg struct {
	Type   string          `json:"type"`
	Room   string          `json:"room"`
	From   string          `json:"from"`
	Offset *uint64         `json:"offset"`
	Epoch  string          `json:"epoch"`
	Data   json.RawMessage `json:"data"`
}

// wireData is the union of the data fields -chaos reads: the connected
// event, a join acknowledgement (or another member's join event), an error,
// and a chat message's seq.
type wireData struct {
	Event        string  `json:"event"`
	ConnectionID string  `json:"connection_id"`
	UserID       string  `json:"user_id"`
	Offset       *uint64 `json:"offset"`
	Epoch        string  `json:"epoch"`
	Recovered    *bool   `json:"recovered"`
	Seq          *int64  `json:"seq"`
	Code         string  `json:"code"`
}

// parseWire decodes a server frame. Data that is not an object (or absent)
// leaves d empty.
func parseWire(b []byte) (m wireMsg, d wireData, err error) {
	if err = json.Unmarshal(b, &m); err != nil {
		return m, d, err
	}
	if len(m.Data) > 0 && m.Data[0] == '{' {
		json.Unmarshal(m.Data, &d)
	}
	return m, d, nil
}

// joinFrame is a join to room; with a position it carries since.
func joinFrame(room string, offset uint64, epoch string, withSince bool) []byte {
	if !withSince {
		return fmt.Appendf(nil, `{"type":"join","room":%q}`, room)
	}
	return fmt.Appendf(nil, `{"type":"join","room":%q,"data":{"since":{"offset":%d,"epoch":%q}}}`, room, offset, epoch)
}

// chatFrame is message seq published to room.
func chatFrame(room string, seq int64) []byte {
	return fmt.Appendf(nil, `{"type":"chat","room":%q,"data":{"seq":%d}}`, room, seq)
}

// epochOffset names one message of a room.
type epochOffset struct {
	epoch  string
	offset uint64
}

// roomBook is what a room's messages carried, as the first member to get
// each saw it (every other member must see the same), and when the
// publisher sent each one it got back.
type roomBook struct {
	mu   sync.Mutex
	seqs map[epochOffset]int64
	sent map[epochOffset]time.Time
}

func newRoomBook() *roomBook {
	return &roomBook{seqs: map[epochOffset]int64{}, sent: map[epochOffset]time.Time{}}
}

// carried records that (epoch, offset) carried seq, and returns the seq it
// carried before and whether that differs.
func (b *roomBook) carried(epoch string, offset uint64, seq int64) (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := epochOffset{epoch, offset}
	if prev, ok := b.seqs[k]; ok {
		return prev, prev != seq
	}
	b.seqs[k] = seq
	return seq, false
}

// sentAt records when the message at (epoch, offset) was sent.
func (b *roomBook) setSent(epoch string, offset uint64, at time.Time) {
	b.mu.Lock()
	b.sent[epochOffset{epoch, offset}] = at
	b.mu.Unlock()
}

// sentAt returns when the message at (epoch, offset) was sent, or zero.
func (b *roomBook) sentAt(epoch string, offset uint64) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[epochOffset{epoch, offset}]
}

// anyKnown reports whether any member got any offset in [from, to] of
// epoch.
func (b *roomBook) anyKnown(epoch string, from, to uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for o := from; o <= to; o++ {
		if _, ok := b.seqs[epochOffset{epoch, o}]; ok {
			return true
		}
	}
	return false
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
