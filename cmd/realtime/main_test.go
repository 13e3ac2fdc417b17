package main

import (
	"bytes"
	"flag"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every flag has an environment variable; the command line wins over it; a
// bad value is an error, not a silent zero.
func TestFlagsFromEnv(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	size := fs.Int("history-size", 0, "size")
	ttl := fs.Duration("history-ttl", 0, "ttl")
	addr := fs.String("addr", "127.0.0.1:8080", "addr")
	env := map[string]string{"REALTIME_HISTORY_SIZE": "7", "REALTIME_HISTORY_TTL": "2m", "REALTIME_ADDR": "0.0.0.0:1"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	require.NoError(t, flagsFromEnv(fs, lookup))
	require.NoError(t, fs.Parse([]string{"-addr", "127.0.0.1:2"}))
	assert.Equal(t, 7, *size)
	assert.Equal(t, 2*time.Minute, *ttl)
	assert.Equal(t, "127.0.0.1:2", *addr, "the command line wins")
	fs.VisitAll(func(f *flag.Flag) { assert.True(t, strings.HasSuffix(f.Usage, "(env "+envName(f.Name)+")"), f.Name) })

	// Regression: REALTIME_MINT_TOKEN in a pod's environment made the server
	// print a token and exit instead of serving.
	cmd := flag.NewFlagSet("t", flag.ContinueOnError)
	mint := cmd.String("mint-token", "", "mint")
	require.NoError(t, flagsFromEnv(cmd, func(k string) (string, bool) { return "alice", k == "REALTIME_MINT_TOKEN" }))
	assert.Empty(t, *mint, "a command is never taken from the environment")
	assert.NotContains(t, cmd.Lookup("mint-token").Usage, "env")

	bad := flag.NewFlagSet("t", flag.ContinueOnError)
	bad.Int("history-size", 0, "size")
	err := flagsFromEnv(bad, func(k string) (string, bool) { return "abc", k == "REALTIME_HISTORY_SIZE" })
	assert.ErrorContains(t, err, "REALTIME_HISTORY_SIZE")
}

// Regression (a review of the first version): a secret given by environment
// was the flag's printed default, so the usage text (on -h and on any
// command-line error, into the pod's logs) showed the JWT secret and the API
// key.
func TestEnvSecretsStayOutOfUsage(t *testing.T) {
	fs := flag.NewFlagSet("realtime", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	secret := fs.String("jwt-secret", "", "HS256 secret")
	fs.String("api-key", "", "API key")
	env := map[string]string{"REALTIME_JWT_SECRET": "s3cr3t-jwt", "REALTIME_API_KEY": "s3cr3t-key"}
	require.NoError(t, flagsFromEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.Error(t, fs.Parse([]string{"-no-such-flag"})) // an operator's typo
	assert.NotContains(t, out.String(), "s3cr3t")
	assert.Equal(t, "s3cr3t-jwt", *secret, "still set")
}

// Regression: an environment variable set but empty (REALTIME_PPROF= from a
// blank Helm value) is unset, not a parse error that stops the server.
func TestEmptyEnvIsUnset(t *testing.T) {
	fs := flag.NewFlagSet("realtime", flag.ContinueOnError)
	pprof := fs.Bool("pprof", false, "pprof")
	require.NoError(t, flagsFromEnv(fs, func(k string) (string, bool) { return "", k == "REALTIME_PPROF" }))
	assert.False(t, *pprof)
}

// The server samples no allocations unless it serves pprof: the profile's
// stack table is resident memory nobody asked for.
func TestNoMemoryProfilingByDefault(t *testing.T) {
	if strings.Contains(os.Getenv("GODEBUG"), "memprofilerate=") {
		assert.False(t, memProfileOff, "GODEBUG's rate wins")
		return
	}
	assert.True(t, memProfileOff)
	assert.Equal(t, 0, runtime.MemProfileRate)
}
