package broadcast

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// History: each key (room) may keep its recent payloads in a Redis stream,
// "<prefix>.{p<P>}.h.<key>", with its position in a hash,
// "<prefix>.{p<P>}.m.<key>" (fields o: last offset, e: epoch). Both carry
// the hash tag of the key's partition channel, so the script that appends
// to the stream and publishes to the channel touches one Redis Cluster slot.
//
// Append is atomic: the script increments the offset, creates the epoch if
// the key has none (Redis lost it, or it is new: the stream is deleted then,
// so an epoch never mixes with an older one), XADDs the payload under the ID
// "0-<offset>" with its time, trims the stream to Size, renews the TTLs and
// SPUBLISHes the envelope, in that order; so pods receive a key's payloads
// in offset order, and a payload is in the stream before any pod gets it.
//
// Payloads are JSON objects: the script splices `"offset":N,"epoch":"E",`
// in front of the object's first member, and the envelope sent is
// head + "<offset> <epoch>\n" + the spliced payload.

// HistoryOptions bounds each key's stream.
//
// It is a plain value.
type HistoryOptions struct {
	// Size is how many payloads a stream keeps (MAXLEN).
	Size int
	// TTL is how long a stream outlives its last payload; the reader drops
	// entries older than it too.
	TTL time.Duration
	// MetaTTL is how long a key's position outlives its last payload.
	MetaTTL time.Duration
}

const appendScript = `
local off = redis.call('hincrby', KEYS[2], 'o', 1)
local ep = redis.call('hget', KEYS[2], 'e')
if not ep then
  ep = ARGV[7]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', ep)
end
redis.call('expire', KEYS[2], ARGV[6])
local body = '{"offset":' .. off .. ',"epoch":"' .. ep .. '",' .. string.sub(ARGV[3], 2)
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[4], '0-' .. off, 't', ARGV[8], 'd', body)
redis.call('pexpire', KEYS[1], ARGV[5])
redis.call('spublish', ARGV[1], ARGV[2] .. off .. ' ' .. ep .. '\n' .. body)
return {off, ep}
`

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
  entries = redis.call('xrange', KEYS[1], '0-' .. (tonumber(ARGV[1]) + 1), '+')
end
return {o, ep, entries}
`

// script is a Lua script run by EVALSHA, falling back to EVAL when Redis
// does not have it (after a restart, say).
type script struct{ src, sha string }

func newScript(src string) script {
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}

var (
	appendLua = newScript(appendScript)
	fetchLua  = newScript(fetchScript)
)

// run runs s once per (keys, args) in one pipelined round trip.
func (b *Bus) run(ctx context.Context, s script, keys, args [][]string) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(keys))
	for i := range keys {
		cmds[i] = b.client.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys[i]))).Key(keys[i]...).Arg(args[i]...).Build()
	}
	res := b.client.DoMulti(ctx, cmds...)
	var again []int
	for i, r := range res {
		if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return res
	}
	cmds = cmds[:0]
	for _, i := range again {
		cmds = append(cmds, b.client.B().Eval().Script(s.src).Numkeys(int64(len(keys[i]))).Key(keys[i]...).Arg(args[i]...).Build())
	}
	for k, r := range b.client.DoMulti(ctx, cmds...) {
		res[again[k]] = r
	}
	return res
}

// HistoryKeys returns key's stream and position keys.
func (b *Bus) HistoryKeys(key string) []string {
	tag := b.opts.Prefix + ".{p" + strconv.Itoa(b.Partition(key)) + "}"
	return []string{tag + ".h." + key, tag + ".m." + key}
}

// AppendItem is one payload of Append: a JSON object for key's history,
// sent to key's partition as head followed by its position and itself.
type AppendItem struct {
	Key     string
	Head    []byte
	Payload []byte
}

// Appended is where Append put one item, or why it could not.
//
// It is a plain value.
type Appended struct {
	Offset uint64
	Epoch  string
	Err    error
}

// Append adds each item to its key's history and publishes it, in one
// pipelined round trip (per Redis node), in order; see the History notes.
// newEpoch is used for a key that has no epoch yet.
func (b *Bus) Append(ctx context.Context, o HistoryOptions, items []AppendItem, out []Appended, newEpoch func() string) {
	keys := make([][]string, len(items))
	args := make([][]string, len(items))
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	size, ttl, meta := strconv.Itoa(o.Size), strconv.FormatInt(o.TTL.Milliseconds(), 10), strconv.FormatInt(int64(o.MetaTTL.Seconds()), 10)
	for i, it := range items {
		keys[i] = b.HistoryKeys(it.Key)
		args[i] = []string{b.PartitionChannel(b.Partition(it.Key)), string(it.Head), string(it.Payload), size, ttl, meta, newEpoch(), now}
	}
	for i, r := range b.run(ctx, appendLua, keys, args) {
		out[i] = Appended{}
		vals, err := r.ToArray()
		if err == nil && len(vals) != 2 {
			err = fmt.Errorf("unexpected reply of %d values", len(vals))
		}
		if err != nil {
			b.publishErrors.Add(1)
			out[i].Err = fmt.Errorf("broadcast: append to %s: %w", keys[i][0], err)
			continue
		}
		off, err1 := vals[0].AsInt64()
		epoch, err2 := vals[1].ToString()
		if err1 != nil || err2 != nil || off <= 0 {
			out[i].Err = fmt.Errorf("broadcast: append to %s: bad reply", keys[i][0])
			continue
		}
		b.published.Add(1)
		out[i].Offset, out[i].Epoch = uint64(off), epoch
	}
}

// StreamEntry is one payload read from a history: its offset, when it was
// appended (Unix ns), and the payload with its position spliced in.
//
// It is a plain value.
type StreamEntry struct {
	Offset uint64
	At     int64
	Data   []byte
}

// Fetch returns key's position and the payloads after offset after that its
// stream still has (entries older than o.TTL left out), read at once.
// A key with no position gets one (offset 0, epoch newEpoch).
func (b *Bus) Fetch(ctx context.Context, o HistoryOptions, key string, after uint64, newEpoch string) (off uint64, epoch string, entries []StreamEntry, err error) {
	keys := [][]string{b.HistoryKeys(key)}
	args := [][]string{{strconv.FormatUint(after, 10), newEpoch, strconv.FormatInt(int64(o.MetaTTL.Seconds()), 10)}}
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
		e, ok := parseEntry(r)
		if ok && e.At >= cutoff {
			entries = append(entries, e)
		}
	}
	return off, epoch, entries, nil
}

// parseEntry reads one XRANGE entry: ["0-<offset>", ["t", ms, "d", data]].
func parseEntry(r rueidis.RedisMessage) (StreamEntry, bool) {
	parts, err := r.ToArray()
	if err != nil || len(parts) != 2 {
		return StreamEntry{}, false
	}
	id, _ := parts[0].ToString()
	_, seq, ok := strings.Cut(id, "-")
	off, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return StreamEntry{}, false
	}
	fields, _ := parts[1].ToArray()
	e := StreamEntry{Offset: off}
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].ToString()
		val, _ := fields[i+1].ToString()
		switch name {
		case "t":
			ms, _ := strconv.ParseInt(val, 10, 64)
			e.At = ms * int64(time.Millisecond)
		case "d":
			e.Data = []byte(val)
		}
	}
	return e, e.Data != nil
}
