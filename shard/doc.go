// Package shard is a lock-striped registry of connections and rooms.
//
// It knows nothing of WebSocket or JSON: it is generic over the connection
// type C and keys connections by a string ID. Connections live in a fixed,
// power-of-two array of shards picked by xxhash of their ID, rooms in a
// second array picked by xxhash of the room name; each shard has its own
// sync.RWMutex, so work on different connections or rooms rarely contends.
//
// Room members are kept in dense slices ("stripes") with an index beside
// them: join and leave are O(1) and a broadcast iterates slices, never a map.
// A stripe holds at most Options.StripeSize members under its own RWMutex;
// a bigger room has several stripes, which one broadcast can visit on several
// goroutines at once, and a join or leave locks only the stripe it touches.
//
// # Guarantees
//
// Once Unregister(id) has returned, no later call of EachConn, EachInRoom or
// Do visits that connection: the visitors read under the same locks that
// Unregister takes to remove it. Visitor callbacks run with a shard or
// stripe read-locked, so they must not block and must not call the
// registry's mutating methods (Register, Unregister, Join, Leave).
package shard
