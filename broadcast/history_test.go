package broadcast

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime/internal/redistest"
)

// Batches of several keys and partitions, payloads with digits, newlines
// and multi-byte UTF-8: Fetch returns each at its offset, byte for byte.
func TestAppendFetchRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	client := redistest.Client(t, srv.Addr)
	b := New(client, "p", quiet(), nil)
	o := HistoryOptions{Size: 1000, TTL: time.Minute, MetaTTL: time.Hour}.Prepared()
	var items []AppendItem
	want := map[string][]string{}
	for i := range 300 {
		key := fmt.Sprint("k", i%7)
		p := fmt.Sprintf(`{"d":"12\n%d é€😀 %q"}`, i, key)
		if i%5 == 0 {
			p = fmt.Sprintf("{\"n\":\n%d}", i) // a raw newline, digits
		}
		items = append(items, AppendItem{Key: key, Payload: []byte(p)})
		want[key] = append(want[key], p)
	}
	out := make([]Appended, len(items))
	n := 0
	b.Append(context.Background(), o, items, out, func() string { n++; return fmt.Sprintf("e%x", n) })
	for i, a := range out {
		require.NoError(t, a.Err, i)
	}
	for key, ps := range want {
		off, _, entries, err := b.Fetch(context.Background(), o, key, 0, "ffff")
		require.NoError(t, err)
		assert.Equal(t, uint64(len(ps)), off)
		require.Len(t, entries, len(ps), key)
		for k, e := range entries {
			assert.Equal(t, uint64(k+1), e.Offset)
			assert.Equal(t, ps[k], string(e.Data))
		}
	}
}

// Entries written before blobs (one "d" field per payload, no count) are
// still in Redis after an upgrade: each is read at its own offset.
func TestFetchReadsEntriesOfTheOlderFormat(t *testing.T) {
	srv := redistest.Start(t)
	client := redistest.Client(t, srv.Addr)
	b := New(client, "p", quiet(), nil)
	o := HistoryOptions{Size: 100, TTL: time.Minute, MetaTTL: time.Hour}
	keys := b.HistoryKeys("r")
	ctx := context.Background()
	now := fmt.Sprint(time.Now().UnixMilli())
	require.NoError(t, client.Do(ctx, client.B().Hset().Key(keys[1]).FieldValue().FieldValue("o", "3").FieldValue("e", "abc").Build()).Error())
	require.NoError(t, client.Do(ctx, client.B().Arbitrary("XADD", keys[0], "0-1", "t", now, "d", `{"a":1}`, "d", `{"a":2}`, "d", `{"a":3}`).Build()).Error())
	_, _, entries, err := b.Fetch(ctx, o, "r", 0, "ffff")
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprint(e.Offset, " ", string(e.Data)))
	}
	assert.Equal(t, []string{`1 {"a":1}`, `2 {"a":2}`, `3 {"a":3}`}, got)
}

// Batches of random sizes: a Fetch from any offset returns exactly the
// messages after it among the last Size.
func TestTrimKeepsTheLastSize(t *testing.T) {
	srv := redistest.Start(t)
	client := redistest.Client(t, srv.Addr)
	b := New(client, "p", quiet(), nil)
	o := HistoryOptions{Size: 10, TTL: time.Minute, MetaTTL: time.Hour}.Prepared()
	total := uint64(0)
	seed := uint64(12345)
	for round := range 200 {
		seed = seed*6364136223846793005 + 1442695040888963407
		n := int(seed>>33)%128 + 1
		if round%3 == 0 {
			n = 1
		}
		items := make([]AppendItem, n)
		for i := range items {
			items[i] = AppendItem{Key: "r", Payload: []byte(fmt.Sprintf(`{"i":%d}`, total+uint64(i)+1))}
		}
		out := make([]Appended, n)
		b.Append(context.Background(), o, items, out, func() string { return "e1" })
		total += uint64(n)
		for after := uint64(0); after <= total; after += 1 + total/7 {
			off, _, entries, err := b.Fetch(context.Background(), o, "r", after, "ffff")
			require.NoError(t, err)
			require.Equal(t, total, off)
			lo := uint64(1) // the oldest of the last 10
			if total > 10 {
				lo = total - 9
			}
			first := max(after+1, lo)
			require.Len(t, entries, int(total-first+1), "after %d of %d", after, total)
			for k, e := range entries {
				require.Equal(t, first+uint64(k), e.Offset)
				require.Equal(t, fmt.Sprintf(`{"i":%d}`, e.Offset), string(e.Data))
			}
		}
	}
}
