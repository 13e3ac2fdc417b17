//go:build race

package netpoll

// raceEnabled: the race detector is on, and sync.Pool drops a quarter of
// what is put back, so allocation counts of pooled paths are not zero.
const raceEnabled = true
