package broadcast

import (
	"context"
	"fmt"
	"slices"
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
// so an epoch never mixes with an older one), SPUBLISHes the envelope, XADDs
// the payload under the ID "0-<offset>" with its time, trims the stream and
// renews the TTLs, all in one script; so pods receive a key's payloads in
// offset order, and no pod sees a payload the stream does not have (a
// script's effects are seen all at once).
//
// Streams are trimmed by offset (XADD MINID ~): an entry holds one
// append's payloads of a key (up to MaxAppendBatch), so a count of entries
// would not bound the payloads; whole nodes of entries go at once, so a
// stream holds somewhat more than Size payloads, and reads return exactly
// the last Size. A read starts at most Size+MaxAppendBatch payloads back.
//
// The envelope sent is head + "<offset> <epoch>\n" + the payload, or for
// several payloads of one key appended at once, head + "<first offset>
// <epoch> <n>\n" and then each payload as "<length>\n<payload>"; the
// stream entry of one append of a key holds the same bytes after its "0-<first
// offset>" ID, time "t" and count "n", as "b". (Entries written before, with
// one "d" per payload, are still read.)

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

	args [3]string // the above as script arguments, once made
}

// appendScript appends payloads to the histories of the rooms KEYS names
// as (stream, position) pairs, all of one partition, and publishes them:
// after six common arguments, ARGV holds for each room its envelope head,
// its count n and its payloads as one blob (the payload itself for n = 1,
// else n × "<length>\n<payload>", built by the caller). The blob is the
// stream entry's "b" and the envelope's body, so the script does no work per
// payload. It returns each room's first offset and epoch.
const appendScript = `
local ch, size, ttl, metattl, now, newep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local out = {}
local a = 7
for i = 1, #KEYS / 2 do
  local s, m = KEYS[2 * i - 1], KEYS[2 * i]
  local head, n, blob = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local last = redis.call('hincrby', m, 'o', n)
  local ep = redis.call('hget', m, 'e')
  if not ep then
    ep = newep
    redis.call('del', s)
    redis.call('hset', m, 'e', ep)
  end
  redis.call('expire', m, metattl)
  local first = last - n + 1
  local keep = last - tonumber(size) + 1 - 127
  if keep < 1 then keep = 1 end
  if n == 1 then
    redis.call('spublish', ch, head .. first .. ' ' .. ep .. '\n' .. blob)
  else
    redis.call('spublish', ch, head .. first .. ' ' .. ep .. ' ' .. n .. '\n' .. blob)
  end
  redis.call('xadd', s, 'MINID', '~', '0-' .. keep, '0-' .. first, 't', now, 'n', n, 'b', blob)
  redis.call('pexpire', s, ttl)
  out[i] = first .. ' ' .. ep
  a = a + 3
end
return table.concat(out, ' ')
`

// HistoryKeys returns key's stream and position keys.
func (b *Bus) HistoryKeys(key string) []string {
	buf := make([]byte, 0, 2*(len(b.opts.Prefix)+len(key)+12))
	buf = b.appendTag(buf, key)
	buf = append(buf, ".h."...)
	buf = append(buf, key...)
	n := len(buf)
	buf = b.appendTag(buf, key)
	buf = append(buf, ".m."...)
	buf = append(buf, key...)
	both := string(buf) // one allocation for the two
	return []string{both[:n], both[n:]}
}

// appendTag appends key's partition hash tag part, "<prefix>.{p<n>}".
func (b *Bus) appendTag(buf []byte, key string) []byte {
	buf = append(buf, b.opts.Prefix...)
	buf = append(buf, ".{p"...)
	buf = strconv.AppendInt(buf, int64(b.Partition(key)), 10)
	return append(buf, '}')
}

// AppendItem is one payload of Append: a JSON object for Key's history,
// sent to Key's partition in the envelope "<pod>\n<key>\n<offset>
// <epoch>\n<payload>" (see the History notes for several at once).
type AppendItem struct {
	Key     string
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

// MaxAppendBatch is the most items one Append may carry for one key (a
// stream entry holds one append's payloads of a key; Fetch reads back that
// far to find the entry an offset is in).
const MaxAppendBatch = 128

// Append adds each item to its key's history and publishes it, in order,
// in one pipelined round trip (per Redis node): one script call per
// partition the items fall in, which takes each key's position once for
// all of its items; see the History notes. newEpoch is used for a key that
// has no epoch yet. The payloads must not change until Append returns (they
// are sent without a copy).
func (b *Bus) Append(ctx context.Context, o HistoryOptions, items []AppendItem, out []Appended, newEpoch func() string) {
	for len(items) > MaxAppendBatch {
		b.Append(ctx, o, items[:MaxAppendBatch], out, newEpoch)
		items, out = items[MaxAppendBatch:], out[MaxAppendBatch:]
	}
	groups := groupItems(b, items)
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	size, ttl, meta := o.strings()
	epoch := newEpoch() // for a key with none: one per call is enough (keys are distinct)
	keys := make([][]string, len(groups))
	args := make([][]string, len(groups))
	for gi, g := range groups {
		args[gi] = append(make([]string, 0, 6+3*len(g.keys)), b.PartitionChannel(b.Partition(g.keys[0])), size, ttl, meta, now, epoch)
		for k, key := range g.keys {
			idx := g.of[k]
			keys[gi] = append(keys[gi], b.HistoryKeys(key)...)
			args[gi] = append(args[gi], b.pod+"\n"+key+"\n", strconv.Itoa(len(idx)), blob(items, idx))
		}
	}
	for gi, r := range b.run(ctx, appendLua, keys, args) {
		g := groups[gi]
		reply, err := r.ToString() // "<first offset> <epoch>" per key, space-separated
		fields := strings.Fields(reply)
		if err == nil && len(fields) != 2*len(g.keys) {
			err = fmt.Errorf("unexpected reply %q", reply)
		}
		for k := range g.keys {
			first := Appended{Err: err}
			if err == nil {
				first = appended(fields[2*k], fields[2*k+1])
			}
			for n, i := range g.of[k] {
				out[i] = first
				if first.Err != nil {
					b.publishErrors.Add(1)
					out[i].Err = fmt.Errorf("broadcast: append to %s: %w", keys[gi][2*k], first.Err)
					continue
				}
				out[i].Offset += uint64(n)
				b.published.Add(1)
			}
		}
	}
}

// appendGroup is the items of one partition: its keys in order of first
// appearance, and each key's items (of[k] for keys[k]).
type appendGroup struct {
	part int
	keys []string
	of   [][]int
}

// onlyFirst is the items of a batch of one (shared, never changed).
var onlyFirst = []int{0}

// groupItems groups items by partition and key, in order. Batches are small
// (at most MaxAppendBatch): linear searches beat maps here.
func groupItems(b *Bus, items []AppendItem) []*appendGroup {
	if len(items) == 1 {
		return []*appendGroup{{part: b.Partition(items[0].Key), keys: []string{items[0].Key}, of: [][]int{onlyFirst}}}
	}
	var groups []*appendGroup
	for i, it := range items {
		p := b.Partition(it.Key)
		var g *appendGroup
		for _, x := range groups {
			if x.part == p {
				g = x
				break
			}
		}
		if g == nil {
			g = &appendGroup{part: p}
			groups = append(groups, g)
		}
		k := slices.Index(g.keys, it.Key)
		if k < 0 {
			k = len(g.keys)
			g.keys = append(g.keys, it.Key)
			g.of = append(g.of, nil)
		}
		g.of[k] = append(g.of[k], i)
	}
	return groups
}

// Prepared returns o with its script arguments made, so that each Append
// need not make them again.
func (o HistoryOptions) Prepared() HistoryOptions {
	o.strings()
	return o
}

// strings returns the bounds as the scripts take them (made once if o was
// Prepared).
func (o *HistoryOptions) strings() (size, ttl, meta string) {
	if o.args[0] == "" {
		o.args = [3]string{strconv.Itoa(o.Size), strconv.FormatInt(o.TTL.Milliseconds(), 10), strconv.FormatInt(int64(o.MetaTTL.Seconds()), 10)}
	}
	return o.args[0], o.args[1], o.args[2]
}

// blob is the payloads of items[idx] as one string: the payload itself for
// one, else each as "<length>\n<payload>" (see the History notes).
func blob(items []AppendItem, idx []int) string {
	if len(idx) == 1 {
		return rueidis.BinaryString(items[idx[0]].Payload) // no copy: payloads are not changed (Append's contract)
	}
	n := 0
	for _, i := range idx {
		n += len(items[i].Payload) + 8
	}
	b := make([]byte, 0, n)
	for _, i := range idx {
		b = strconv.AppendInt(b, int64(len(items[i].Payload)), 10)
		b = append(b, '\n')
		b = append(b, items[i].Payload...)
	}
	return rueidis.BinaryString(b)
}

// appended reads one "<offset> <epoch>" of the append script's reply.
func appended(offset, epoch string) Appended {
	off, err := strconv.ParseUint(offset, 10, 64)
	if err != nil || off == 0 || epoch == "" {
		return Appended{Err: fmt.Errorf("bad reply %q %q", offset, epoch)}
	}
	return Appended{Offset: off, Epoch: epoch}
}
