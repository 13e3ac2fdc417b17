package broadcast

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Reading a key's history back (Fetch), and starting it over (NewEpoch).

const fetchScript = `
local o = redis.call('hget', KEYS[2], 'o')
local ep = redis.call('hget', KEYS[2], 'e')
if not ep then
  ep = ARGV[2]
  o = '0'
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', ep, 'o', 0)
end
redis.call('expire', KEYS[2], ARGV[3])
local entries = {}
if tonumber(ARGV[1]) < tonumber(o) then
  local from = math.max(tonumber(ARGV[1]) + 1, tonumber(o) - tonumber(ARGV[5]) + 1) - tonumber(ARGV[4])
  entries = redis.call('xrange', KEYS[1], '0-' .. math.max(1, from), '+')
end
return {o, ep, entries}
`

const newEpochScript = `
if redis.call('hget', KEYS[2], 'e') == ARGV[1] then
  redis.call('hset', KEYS[2], 'e', ARGV[2])
  redis.call('del', KEYS[1])
  return 1
end
return 0
`

// NewEpoch makes key's history start over in epoch next if it is still in
// epoch old: its stream is emptied, its offsets go on. A pod calls it when
// it finds Redis behind what it delivered in the same epoch (Redis lost
// recent writes: a restart from an old snapshot, a failover), so that the
// offsets Redis gives again cannot be taken for ones delivered already.
func (b *Bus) NewEpoch(ctx context.Context, key, old, next string) error {
	keys := [][]string{b.HistoryKeys(key)}
	if err := b.run(ctx, newEpochLua, keys, [][]string{{old, next}})[0].Error(); err != nil {
		return fmt.Errorf("broadcast: new epoch of %s: %w", keys[0][0], err)
	}
	return nil
}

// StreamEntry is one payload read from a history: its offset, when it was
// appended (Unix ns), and the payload.
//
// It is a plain value.
type StreamEntry struct {
	Offset uint64
	At     int64
	Data   []byte
}

// Fetch returns key's position and the payloads after offset after that its
// stream still has, read at once: at most the last o.Size, none older than
// o.TTL (the stream may hold more; see MAXLEN ~ above).
// A key with no position gets one (offset 0, epoch newEpoch).
func (b *Bus) Fetch(ctx context.Context, o HistoryOptions, key string, after uint64, newEpoch string) (off uint64, epoch string, entries []StreamEntry, err error) {
	keys := [][]string{b.HistoryKeys(key)}
	args := [][]string{{strconv.FormatUint(after, 10), newEpoch, strconv.FormatInt(int64(o.MetaTTL.Seconds()), 10), strconv.Itoa(MaxAppendBatch), strconv.Itoa(o.Size)}}
	vals, err := b.run(ctx, fetchLua, keys, args)[0].ToArray()
	if err == nil && len(vals) != 3 {
		err = fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	if err != nil {
		return 0, "", nil, fmt.Errorf("broadcast: fetch %s: %w", keys[0][0], err)
	}
	o1, _ := vals[0].ToString()
	off, err = strconv.ParseUint(o1, 10, 64)
	if err != nil {
		return 0, "", nil, fmt.Errorf("broadcast: fetch %s: bad offset %q", keys[0][0], o1)
	}
	epoch, _ = vals[1].ToString()
	raw, _ := vals[2].ToArray()
	cutoff := time.Now().Add(-o.TTL).UnixNano()
	for _, r := range raw {
		for _, e := range parseEntry(r) {
			if e.Offset > after && e.At >= cutoff && e.Offset+uint64(o.Size) > off { // the last Size, exactly
				entries = append(entries, e)
			}
		}
	}
	return off, epoch, entries, nil
}

// parseEntry reads one XRANGE entry: ["0-<first offset>", ["t", ms, "n",
// count, "b", blob]], the payloads of one append of one key (see blob), or
// an entry written before blobs, with one "d" field per payload.
func parseEntry(r rueidis.RedisMessage) []StreamEntry {
	parts, err := r.ToArray()
	if err != nil || len(parts) != 2 {
		return nil
	}
	id, _ := parts[0].ToString()
	_, seq, ok := strings.Cut(id, "-")
	off, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return nil
	}
	fields, _ := parts[1].ToArray()
	var at int64
	n := 1
	var blob string
	var payloads [][]byte
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].ToString()
		val, _ := fields[i+1].ToString()
		switch name {
		case "t":
			ms, _ := strconv.ParseInt(val, 10, 64)
			at = ms * int64(time.Millisecond)
		case "n":
			n, _ = strconv.Atoi(val)
		case "b":
			blob = val
		case "d":
			payloads = append(payloads, []byte(val))
		}
	}
	if payloads == nil {
		if payloads, ok = splitBlob([]byte(blob), n); !ok {
			return nil
		}
	}
	out := make([]StreamEntry, len(payloads))
	for k, p := range payloads {
		out[k] = StreamEntry{Offset: off + uint64(k), At: at, Data: p}
	}
	return out
}

// splitBlob undoes blob for n payloads.
func splitBlob(b []byte, n int) ([][]byte, bool) {
	if n == 1 {
		return [][]byte{b}, len(b) > 0
	}
	if n < 1 || n > MaxAppendBatch {
		return nil, false
	}
	out := make([][]byte, 0, n)
	for range n {
		num, rest, ok := bytes.Cut(b, []byte{'\n'})
		size, err := strconv.Atoi(string(num))
		if !ok || err != nil || size < 0 || size > len(rest) {
			return nil, false
		}
		out = append(out, rest[:size])
		b = rest[size:]
	}
	return out, true
}
