package main

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Our servers run their defaults unless the load needs more than them.
func TestHarnessArgsKeepTheDefaults(t *testing.T) {
	assert.Empty(t, harnessArgs(&config{rate: 25, rooms: 1}), "make loadtest's default load")
	assert.Empty(t, harnessArgs(&config{rate: 400, rooms: 100}), "4 a second per room's publisher")
	assert.Equal(t, []string{"-rate-limit", "-1"}, harnessArgs(&config{rate: 0, rooms: 1}), "as fast as deliveries keep up")
	assert.Equal(t, []string{"-rate-limit", "-1"}, harnessArgs(&config{rate: 100, rooms: 1}))
}

// What the environment sets for the servers is found (and reported), and
// nothing else is.
func TestInheritedServerEnv(t *testing.T) {
	got := inheritedServerEnv([]string{"HOME=/root", "REALTIME_KEEP_MEMORY=true", "GOGC=100", "PATH=/bin", "GOMEMLIMIT=1GiB", "GODEBUG=x=1", "GOPATH=/go"})
	assert.True(t, slices.Equal([]string{"REALTIME_KEEP_MEMORY=true", "GOGC=100", "GOMEMLIMIT=1GiB", "GODEBUG=x=1"}, got), "%v", got)
}
