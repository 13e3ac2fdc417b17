package shard

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Members of a room share the room's copy of its name: a joiner's own
// string (decoded from its message) is not kept for each member.
func TestMembersShareTheRoomName(t *testing.T) {
	r := New[*conn](Options{})
	a, b := &conn{id: "a"}, &conn{id: "b"}
	require.NoError(t, r.Register(a.id, a))
	require.NoError(t, r.Register(b.id, b))
	nameA, nameB := strings.Clone("room"), strings.Clone("room")
	_, err := r.Join("a", nameA, 0)
	require.NoError(t, err)
	_, err = r.Join("b", nameB, 0)
	require.NoError(t, err)
	ra, rb := r.Rooms("a"), r.Rooms("b")
	require.Len(t, ra, 1)
	require.Len(t, rb, 1)
	assert.Equal(t, addr(ra[0]), addr(rb[0]), "one string for the room")
	assert.NotEqual(t, addr(nameB), addr(rb[0]), "not the joiner's")
}

// addr is where s's bytes are (compared as a number: assert compares
// pointers by what they point to).
func addr(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }
