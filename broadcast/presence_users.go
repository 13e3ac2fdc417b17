package broadcast

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// A user's connections across pods, and when it goes offline everywhere.
// Per user, in one hash slot ({pres.u.<user>}):
//   - rt.{pres.u.U}: incarnation → the user's connections on that pod;
//   - rt.{pres.u.U}.off: rooms told the user is offline (until it is back);
//   - rt.{pres.u.U}.wait: rooms of pods whose last connection of the user
//     closed while it was connected elsewhere, for the pod that goes last;
//   - rt.{pres.u.U}.st: the status a client set ("away"), if not online.

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

// settleLua decides, for a pod whose last connection of a user closed a
// debounce ago, whether the user is offline everywhere. ARGV[1] is k, the
// number of live incarnations that follow; after them, the rooms of the
// pod's connections of the user. If a live incarnation still has a
// connection, the rooms wait for the last pod (KEYS[3]) and nothing is
// returned; else the rooms to tell "offline" are returned, each once
// across pods (KEYS[2] remembers them), and the status is forgotten.
var settleLua = rueidis.NewLuaScript(`
local k = tonumber(ARGV[1])
local live = {}
for i = 2, k + 1 do live[ARGV[i]] = true end
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  if live[h[i]] and tonumber(h[i + 1]) > 0 then
    for j = k + 2, #ARGV do redis.call('SADD', KEYS[3], ARGV[j]) end
    if #ARGV > k + 1 then redis.call('PEXPIRE', KEYS[3], 86400000) end
    return {}
  end
end
local rooms = redis.call('SMEMBERS', KEYS[3])
redis.call('DEL', KEYS[3], KEYS[4])
for j = k + 2, #ARGV do rooms[#rooms + 1] = ARGV[j] end
local out = {}
for _, r in ipairs(rooms) do
  if redis.call('SADD', KEYS[2], r) == 1 then out[#out + 1] = r end
end
if #out > 0 then redis.call('PEXPIRE', KEYS[2], 86400000) end
return out`)

func (p *Presence) offKey(user string) string    { return p.userKey(user) + ".off" }
func (p *Presence) waitKey(user string) string   { return p.userKey(user) + ".wait" }
func (p *Presence) statusKey(user string) string { return p.userKey(user) + ".st" }

// AddConnection adds delta (+1 or -1) to user's connections on this pod. On
// +1, if the user had been announced offline, back (if not nil) is called,
// on a writer goroutine, with the rooms told so.
func (p *Presence) AddConnection(user string, delta int64, back func(rooms []string)) {
	key := p.userKey(user)
	if delta <= 0 {
		p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
			return countLua.Exec(ctx, p.client, []string{key}, []string{p.self, strconv.FormatInt(delta, 10)}).Error()
		}})
		return
	}
	p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
		rooms, err := arriveLua.Exec(ctx, p.client, []string{key, p.offKey(user)}, []string{p.self}).AsStrSlice()
		if err == nil && len(rooms) > 0 && back != nil {
			back(rooms)
		}
		return err
	}})
}

// Settle is called a debounce after this pod's last connection of user
// closed, with the rooms they were in: if user has no connection on any
// live pod, announce is called (on a writer goroutine) with the rooms that
// must hear "offline", each given to one pod only; else the rooms wait for
// the pod whose connection of user goes last.
func (p *Presence) Settle(user string, rooms []string, announce func(rooms []string)) {
	key := p.userKey(user)
	p.enqueueOp(op{key: key, run: func(ctx context.Context) error {
		leases, err := p.leaseState(ctx)
		if err != nil {
			return err
		}
		args := []string{""}
		for inc, valid := range leases {
			if valid {
				args = append(args, inc)
			}
		}
		args[0] = strconv.Itoa(len(args) - 1)
		args = append(args, rooms...)
		keys := []string{key, p.offKey(user), p.waitKey(user), p.statusKey(user)}
		out, err := settleLua.Exec(ctx, p.client, keys, args).AsStrSlice()
		if err == nil && len(out) > 0 {
			announce(out)
		}
		return err
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
	if len(ms) == 0 {
		return ms, nil
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
