//go:build !race

package netpoll

// raceEnabled: see race_on_test.go.
const raceEnabled = false
