package broadcast

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// A user's connections across pods, and when it goes offline everywhere.
// Per user, in one hash slot ({pres.u.<user>}):
//   - rt.{pres.u.U}: incarnation → the user's connections on that pod;
//   - rt.{pres.u.U}.off: rooms told the user is offline (until it is back);
//   - rt.{pres.u.U}.wait: rooms of pods whose last connection of the user
//     closed while it was connected elsewhere, for the pod that goes last;
//   - rt.{pres.u.U}.st: the status a client set ("away"), if not online;
//   - rt.{pres.u.U}.last: when (Redis time, ms) a pod last lost its last
//     connection of the user, so that the debounce counts from the last
//     close anywhere.

// countLua adds ARGV[2] to field ARGV[1] of hash KEYS[1] and removes the
// field when it reaches zero; it returns the new count.
var countLua = rueidis.NewLuaScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n`)

// arriveLua counts one more connection of a user on pod ARGV[1]; if the user
// had been announced offline it returns the rooms told so (and forgets
// them: exactly one arrival gets them).
var arriveLua = rueidis.NewLuaScript(`
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local rooms = redis.call('SMEMBERS', KEYS[2])
if #rooms > 0 then redis.call('DEL', KEYS[2]) end
return rooms`)

// leaveLua counts one connection less of a user on pod ARGV[1]; when the
// pod has none left, it records when (KEYS[2]).
var leaveLua = rueidis.NewLuaScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000), 'PX', 86400000)
end
return n`)

// settleLua decides, for a pod whose last connection of a user closed a
// debounce ago, whether the user is offline everywhere. ARGV[1] is k, the
// number of live incarnations that follow, ARGV[2] the debounce in ms;
// after the incarnations, the rooms of the pod's connections of the user.
// If a live incarnation still has a connection, the rooms wait for the
// last pod (KEYS[3]): {"online"}. If another pod's last connection closed
// less than a debounce ago: {"later", ms}: ask again then. Else the rooms
// to tell "offline", each once across pods (KEYS[2] remembers them):
// {"offline", rooms...}; the status is forgotten.
var settleLua = rueidis.NewLuaScript(`
local k = tonumber(ARGV[1])
local live = {}
for i = 3, k + 2 do live[ARGV[i]] = true end
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if live[h[i]] and tonumber(h[i + 1]) > 0 then
    for j = k + 3, #ARGV do redis.call('SADD', KEYS[3], ARGV[j]) end
    if #ARGV > k + 2 then redis.call('PEXPIRE', KEYS[3], 86400000) end
    return {'online'}
  end
end
local last = tonumber(redis.call('GET', KEYS[5]) or '0')
local t = redis.call('TIME')
local since = t[1] * 1000 + math.floor(t[2] / 1000) - last
if since < tonumber(ARGV[2]) then
  return {'later', tostring(tonumber(ARGV[2]) - since)}
end
local rooms = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3], KEYS[4])
for j = k + 3, #ARGV do rooms[#rooms + 1] = ARGV[j] end
local out = {'offline'}
for _, r in ipairs(rooms) do
  if redis.call('SADD', KEYS[2], r) == 1 then out[#out + 1] = r end
end
if #out > 1 then redis.call('PEXPIRE', KEYS[2], 86400000) end
return out`)

func (p *Presence) offKey(user string) string    { return p.userKey(user) + ".off" }
func (p *Presence) waitKey(user string) string   { return p.userKey(user) + ".wait" }
func (p *Presence) statusKey(user string) string { return p.userKey(user) + ".st" }
func (p *Presence) lastKey(user string) string   { return p.userKey(user) + ".last" }

// AddConnection adds delta (+1 or -1) to user's connections on this pod. On
// +1, if the user had been announced offline, back (if not nil) is called,
// on a writer goroutine, with the rooms told so.
func (p *Presence) AddConnection(user string, delta int64, back func(rooms []string)) {
	key := p.userKey(user)
	fail := func() { p.dirty.user(user) }
	if delta <= 0 {
		p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
			return leaveLua.Exec(ctx, p.client, []string{key, p.lastKey(user)}, []string{p.self}).Error()
		}, fail: fail})
		return
	}
	p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
		rooms, err := arriveLua.Exec(ctx, p.client, []string{key, p.offKey(user)}, []string{p.self}).AsStrSlice()
		if err == nil && len(rooms) > 0 && back != nil {
			back(rooms)
		}
		return err
	}, fail: fail})
}

// Settle is called debounce after this pod's last connection of user
// closed, with the rooms they were in: if user has no connection on any
// live pod and none closed on another pod less than debounce ago, announce
// is called (on a writer goroutine) with the rooms that must hear
// "offline", each given to one pod only; if it is connected elsewhere the
// rooms wait for the pod whose connection of user goes last; if another
// pod's closed more recently, Settle runs again when that one's debounce
// ends. A Settle that fails (Redis away) is retried, with backoff, for up to
// about ten minutes.
func (p *Presence) Settle(user string, rooms []string, debounce time.Duration, announce func(rooms []string)) {
	p.settle(user, rooms, debounce, announce, 0)
}

// settleRetries bounds the retries of a failed Settle (1 s doubling to 30 s
// between them: about ten minutes in all).
const settleRetries = 24

func (p *Presence) settle(user string, rooms []string, debounce time.Duration, announce func(rooms []string), attempt int) {
	again := func(after time.Duration, attempt int) {
		time.AfterFunc(after, func() { p.settle(user, rooms, debounce, announce, attempt) })
	}
	retry := func() {
		if attempt < settleRetries {
			p.retries.after(min(time.Second<<attempt, 30*time.Second), func() {
				p.settle(user, rooms, debounce, announce, attempt+1)
			})
		}
	}
	key := p.userKey(user)
	p.enqueueOp(op{key: key, fail: retry, run: func(ctx context.Context) error {
		if p.dirty.takeUser(user) {
			// A write of this user's count failed: its repair goes first
			// (queued in order with the +1s and -1s), then this settle again.
			p.repairLater(user)
			p.settle(user, rooms, debounce, announce, attempt)
			return nil
		}
		leases, err := p.leaseState(ctx)
		if err != nil {
			return err
		}
		args := []string{"", strconv.FormatInt(debounce.Milliseconds(), 10)}
		for inc, valid := range leases {
			if valid {
				args = append(args, inc)
			}
		}
		args[0] = strconv.Itoa(len(args) - 2)
		args = append(args, rooms...)
		keys := []string{key, p.offKey(user), p.waitKey(user), p.statusKey(user), p.lastKey(user)}
		out, err := settleLua.Exec(ctx, p.client, keys, args).AsStrSlice()
		switch {
		case err != nil:
			return err
		case len(out) == 2 && out[0] == "later":
			ms, _ := strconv.Atoi(out[1])
			again(time.Duration(ms+10)*time.Millisecond, attempt)
		case len(out) > 1 && out[0] == "offline":
			announce(out[1:])
		}
		return nil
	}})
}

// SetStatus records the status a client of user set ("online" clears it).
// It lasts until the user goes offline, or a day.
func (p *Presence) SetStatus(user, status string) {
	if status == "online" || status == "" {
		p.enqueue(p.client.B().Del().Key(p.statusKey(user)).Build())
		return
	}
	p.enqueue(p.client.B().Set().Key(p.statusKey(user)).Value(status).ExSeconds(86400).Build())
}

// Connections returns user's connections on live pods.
func (p *Presence) Connections(ctx context.Context, user string) (int, error) {
	leases, err := p.leaseState(ctx)
	if err != nil {
		return 0, err
	}
	all, err := p.client.Do(ctx, p.client.B().Hgetall().Key(p.userKey(user)).Build()).AsStrMap()
	if err != nil {
		return 0, fmt.Errorf("broadcast: connections of %q: %w", user, err)
	}
	total := 0
	var dead []string
	for inc, count := range all {
		valid, known := leases[inc]
		switch n, _ := strconv.Atoi(count); {
		case valid && n > 0:
			total += n
		case known && !valid:
			dead = append(dead, inc)
		}
	}
	p.forget(p.userKey(user), dead)
	return total, nil
}

// Member is one user of a room across pods: its connections in the room and
// its status ("online" unless a client set another). It is a plain value.
type Member struct {
	User        string
	Connections int
	Status      string
}

// RoomMembers returns the users in room on live pods, each once, in no
// particular order, with their connections in the room and status.
func (p *Presence) RoomMembers(ctx context.Context, room string) ([]Member, error) {
	ms, err := p.roomCounts(ctx, room)
	if err != nil || len(ms) == 0 {
		return ms, err
	}
	cmds := make(rueidis.Commands, len(ms))
	for i, m := range ms {
		cmds[i] = p.client.B().Get().Key(p.statusKey(m.User)).Build()
	}
	for i, r := range p.client.DoMulti(ctx, cmds...) {
		if st, err := r.ToString(); err == nil && st != "" {
			ms[i].Status = st
		}
	}
	return ms, nil
}

// roomCounts returns the users in room on live pods with their connections
// in it (status "online"), and removes dead pods' entries it sees.
func (p *Presence) roomCounts(ctx context.Context, room string) ([]Member, error) {
	leases, err := p.leaseState(ctx)
	if err != nil {
		return nil, err
	}
	all, err := p.client.Do(ctx, p.client.B().Hgetall().Key(p.roomKey(room)).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("broadcast: members of %q: %w", room, err)
	}
	idx := map[string]int{}
	var ms []Member
	var dead []string
	for field, count := range all {
		inc, user, _ := strings.Cut(field, "|")
		valid, known := leases[inc]
		n, _ := strconv.Atoi(count)
		switch {
		case known && !valid:
			dead = append(dead, field)
			continue
		case !valid || n <= 0:
			continue
		}
		if i, ok := idx[user]; ok {
			ms[i].Connections += n
			continue
		}
		idx[user] = len(ms)
		ms = append(ms, Member{User: user, Connections: n, Status: "online"})
	}
	p.forget(p.roomKey(room), dead)
	return ms, nil
}

// LivePods returns the IDs of the pods whose lease is valid (this one
// included), each once.
func (p *Presence) LivePods(ctx context.Context) ([]string, error) {
	leases, err := p.leaseState(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var pods []string
	for inc, valid := range leases {
		pod, _, _ := strings.Cut(inc, "#")
		if valid && !seen[pod] {
			seen[pod] = true
			pods = append(pods, pod)
		}
	}
	return pods, nil
}
