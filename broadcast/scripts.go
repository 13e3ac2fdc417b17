package broadcast

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	"github.com/redis/rueidis"
)

// script is a Lua script run by EVALSHA, falling back to EVAL when Redis
// does not have it (after a restart, say).
type script struct{ src, sha string }

func newScript(src string) script {
	sum := sha1.Sum([]byte(src))
	return script{src: src, sha: hex.EncodeToString(sum[:])}
}

// run runs s once per (keys, args) in one pipelined round trip.
func (b *Bus) run(ctx context.Context, s script, keys, args [][]string) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(keys))
	for i := range keys {
		cmds[i] = b.client.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys[i]))).Key(keys[i]...).Arg(args[i]...).Build()
	}
	var res []rueidis.RedisResult
	if len(cmds) == 1 {
		res = []rueidis.RedisResult{b.client.Do(ctx, cmds[0])} // Do shares round trips with other callers' commands
	} else {
		res = b.client.DoMulti(ctx, cmds...)
	}
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

var (
	appendLua   = newScript(appendScript)
	fetchLua    = newScript(fetchScript)
	newEpochLua = newScript(newEpochScript)
)
