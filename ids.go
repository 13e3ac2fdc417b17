package realtime

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Message IDs come from one source per process (and so per pod): the pod ID,
// this process's incarnation, and a counter, as "<pod>-<incarnation>-<n>".
// The Handler (client messages, events) and the RedisBroadcaster (messages
// published without an ID) both draw from it, so two parts of one pod never
// mint the same ID, and the incarnation, drawn at random when the process
// starts, keeps a restarted pod with a fixed PodID from reusing the IDs of
// its previous life. Clients may de-duplicate by ID.
var (
	incarnation = randomHex(5) // 40 bits
	messageSeq  atomic.Uint64
)

// newMessageID returns a message ID unique across pods and restarts.
func newMessageID(pod string) string {
	var buf [64]byte // on the stack: the string is the ID's one allocation
	return string(appendMessageID(buf[:0], pod))
}

// appendMessageID appends a new message ID (newMessageID's) to b.
func appendMessageID(b []byte, pod string) []byte {
	n := messageSeq.Add(1)
	b = append(b, pod...)
	b = append(b, '-')
	b = append(b, incarnation...)
	b = append(b, '-')
	return strconv.AppendUint(b, n, 36)
}

// randomPodID returns a pod ID for a pod that was given none.
func randomPodID() string { return randomHex(4) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
