package shard

import (
	"fmt"
	"strings"
)

// Room membership: join, leave, the members' dense stripes, and the hooks
// told when a room appears or empties.

// Join adds the connection registered under id to the room name. joined is
// false if it was a member already. limit, when positive, is the most rooms
// the connection may be in; joining one more returns ErrTooManyRooms.
func (r *Registry[C]) Join(id, name string, limit int) (joined bool, err error) {
	e := r.lookup(id)
	if e == nil {
		return false, fmt.Errorf("join %q: %w", name, ErrNotRegistered)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false, fmt.Errorf("join %q: %w", name, ErrNotRegistered)
	}
	for _, have := range e.rooms {
		if have == name {
			return false, nil
		}
	}
	if limit > 0 && len(e.rooms) >= limit {
		return false, fmt.Errorf("join %q: %w (limit %d)", name, ErrTooManyRooms, limit)
	}
	// The room's own copy of the name: each joiner's (decoded from its
	// message) would cost every member a string.
	e.rooms = append(e.rooms, r.addMember(name, e))
	return true, nil
}

// Leave removes the connection registered under id from the room name.
// left is false if it was not registered or not a member.
func (r *Registry[C]) Leave(id, name string) (left bool) {
	e := r.lookup(id)
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false
	}
	for i, have := range e.rooms {
		if have == name {
			r.removeMember(name, e)
			last := len(e.rooms) - 1
			e.rooms[i] = e.rooms[last]
			e.rooms[last] = ""
			e.rooms = e.rooms[:last]
			if len(e.rooms) == 0 {
				e.rooms = nil
			}
			return true
		}
	}
	return false
}

// Rooms returns a copy of the names of the rooms the connection registered
// under id is in, in no particular order.
func (r *Registry[C]) Rooms(id string) []string {
	e := r.lookup(id)
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead || len(e.rooms) == 0 {
		return nil
	}
	return append([]string(nil), e.rooms...)
}

// addMember adds e to room name (creating it) and returns the room's own
// copy of the name.
func (r *Registry[C]) addMember(name string, e *entry[C]) (canonical string) {
	sh := r.roomShard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.byKey[name]
	if rm == nil {
		name = strings.Clone(name) // not the caller's buffer: the room keeps it
		rm = &room[C]{name: name, index: make(map[*entry[C]]loc)}
		sh.byKey[name] = rm
		r.roomCount.Add(1)
		r.roomChanged(name, true)
	}
	si := r.freeStripe(rm)
	st := rm.stripes[si]
	st.mu.Lock()
	rm.index[e] = loc{stripe: int32(si), pos: int32(len(st.members))}
	st.members = append(st.members, slot[C]{e: e, conn: e.conn})
	st.mu.Unlock()
	rm.size++
	return rm.name
}

// freeStripe returns the index of a stripe with room for one more member,
// appending a new stripe if all are full. Called with the room shard locked.
func (r *Registry[C]) freeStripe(rm *room[C]) int {
	// The last stripe is the usual answer; after leaves, an earlier one may
	// have space. Reading len(members) needs only the room shard lock,
	// because members change only under it (and the stripe's own lock).
	if n := len(rm.stripes); n > 0 && len(rm.stripes[n-1].members) < r.stripeSize {
		return n - 1
	}
	for i, st := range rm.stripes {
		if len(st.members) < r.stripeSize {
			return i
		}
	}
	rm.stripes = append(rm.stripes, &stripe[C]{})
	return len(rm.stripes) - 1
}

func (r *Registry[C]) removeMember(name string, e *entry[C]) {
	sh := r.roomShard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rm := sh.byKey[name]
	if rm == nil {
		return
	}
	at, ok := rm.index[e]
	if !ok {
		return
	}
	delete(rm.index, e)
	st := rm.stripes[at.stripe]
	st.mu.Lock()
	last := len(st.members) - 1
	moved := st.members[last]
	st.members[at.pos] = moved
	st.members[last] = slot[C]{}
	st.members = st.members[:last]
	if last == 0 {
		st.members = nil // an emptied stripe gives its memory back
	}
	st.mu.Unlock()
	if moved.e != e {
		rm.index[moved.e] = at
	}
	rm.size--
	if rm.size == 0 {
		delete(sh.byKey, name)
		r.roomCount.Add(-1)
		r.roomChanged(name, false)
	}
}

// RoomLen returns the number of members of the room name (0 if it does not
// exist).
func (r *Registry[C]) RoomLen(name string) int {
	sh := r.roomShard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if rm := sh.byKey[name]; rm != nil {
		return rm.size
	}
	return 0
}

// RoomStripes returns how many stripes the room name has (0 if it does not
// exist): the most goroutines a broadcast to it can use.
func (r *Registry[C]) RoomStripes(name string) int {
	sh := r.roomShard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if rm := sh.byKey[name]; rm != nil {
		return len(rm.stripes)
	}
	return 0
}

// NumRooms returns the number of rooms with at least one member.
func (r *Registry[C]) NumRooms() int { return int(r.roomCount.Load()) }

func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// OnRoomChange registers fn to be told when a room gets its first member
// (active) and when its last member leaves. fn runs with the room's shard
// locked: it must be quick and must not call the registry.
func (r *Registry[C]) OnRoomChange(fn func(room string, active bool)) {
	r.hooksMu.Lock()
	defer r.hooksMu.Unlock()
	var hooks []func(string, bool)
	if old := r.roomHooks.Load(); old != nil {
		hooks = append(hooks, *old...)
	}
	hooks = append(hooks, fn)
	r.roomHooks.Store(&hooks)
}

func (r *Registry[C]) roomChanged(name string, active bool) {
	if hooks := r.roomHooks.Load(); hooks != nil {
		for _, fn := range *hooks {
			fn(name, active)
		}
	}
}

// EachRoom calls fn with the name of every room that has members.
func (r *Registry[C]) EachRoom(fn func(room string)) {
	for i := range r.rooms {
		sh := &r.rooms[i]
		sh.mu.RLock()
		for name := range sh.byKey {
			fn(name)
		}
		sh.mu.RUnlock()
	}
}

// entry is one registered connection. Rooms store pointers to it, so that an
// old entry leaving its rooms can never remove a newer entry with the same ID.
