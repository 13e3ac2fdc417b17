package main

import (
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
