//go:build race

package main

// raceEnabled: the race detector is on, and it allocates on paths that
// otherwise do not, so allocation counts are not zero.
const raceEnabled = true
