// Command realtime is the realtime server: the WebSocket endpoint at /ws (and
// optionally a raw-TCP WebSocket listener), /healthz, /readyz (fails while
// the Redis pub/sub link is not delivering) and /debug/stats. A single pod
// needs no Redis; -redis links pods. `make run` starts it; SIGINT or SIGTERM shut it
// down gracefully (every client gets close 1001).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/realtimehub/realtime/cmd/realtime/internal/server"
)

// The server samples no allocations unless it serves pprof (-pprof): the
// memory profile's table of allocation stacks (1.4 MB of address space,
// touched a page at a time as samples land) is resident memory a pod that
// nobody profiles pays for. Set before main, so that no sample is taken
// before the flags are read; -pprof restores Go's rate. GODEBUG's
// memprofilerate, when set, wins.
func init() {
	if memProfileOff = !strings.Contains(os.Getenv("GODEBUG"), "memprofilerate="); memProfileOff {
		runtime.MemProfileRate = 0
	}
}

// memProfileOff says init turned allocation sampling off (GODEBUG did not
// set a rate).
var memProfileOff bool

// defaultMemProfileRate is Go's runtime.MemProfileRate.
const defaultMemProfileRate = 512 * 1024

func main() {
	var (
		opts    server.Options
		verbose bool
	)
	flag.StringVar(&opts.Addr, "addr", "127.0.0.1:8080", "HTTP listen address (/ws, /healthz, /debug/stats)")
	flag.StringVar(&opts.RawAddr, "raw-addr", "", "optional raw-TCP WebSocket listen address (zero-copy upgrade)")
	flag.StringVar(&opts.Handler.PodID, "pod-id", "", "pod ID prefixing connection IDs (default random)")
	flag.IntVar(&opts.Shards, "shards", 0, "hub lock stripes (default 8×GOMAXPROCS)")
	flag.Float64Var(&opts.Handler.RateLimit, "rate-limit", 0, "messages per second per connection (default 50; negative: off)")
	flag.IntVar(&opts.Handler.SendQueueBytes, "send-queue-bytes", 0, "bytes queued per connection before it counts as a slow consumer (default 1 MiB)")
	flag.IntVar(&opts.Handler.SendQueueSize, "send-queue", 0, "frames queued per connection before it counts as a slow consumer (default: no limit but -send-queue-bytes)")
	flag.IntVar(&opts.Handler.MaxRoomsPerConn, "max-rooms", 0, "rooms per connection (default 100)")
	flag.BoolVar(&opts.Handler.DisableJoinLeaveEvents, "no-join-events", false, "do not send join/leave events to rooms")
	flag.Float64Var(&opts.Handler.AcceptRate, "accept-rate", 0, "upgrades per second before clients get 503 + Retry-After (default 20000; negative: off)")
	flag.Float64Var(&opts.Handler.DrainRate, "drain-rate", 0, "connections closed per second at shutdown, each with a reconnect hint (default 5000)")
	flag.DurationVar(&opts.Handler.DrainWindow, "drain-window", 0, "longest the shutdown drain may take (default 10s)")
	flag.IntVar(&opts.Handler.HistorySize, "history-size", 0, "messages each room keeps for clients that rejoin with since (in memory on one pod, in Redis streams with -redis; default 100; -1: no history, no offsets)")
	flag.DurationVar(&opts.Handler.HistoryTTL, "history-ttl", 0, "how long a room's messages stay recoverable (default 5m)")
	redis := flag.String("redis", "", "Redis address(es), comma-separated: links pods (empty: single pod)")
	flag.BoolVar(&opts.RedisCluster, "redis-cluster", false, "the Redis addresses are Redis Cluster nodes")
	jwtSecret := flag.String("jwt-secret", "", "HS256 secret: clients need a signed token (sub = user ID) in Authorization: Bearer or ?token=")
	flag.StringVar(&opts.APIKey, "api-key", "", "serve the server API under /api/ to requests with Authorization: apikey KEY (empty: /api/ is 404)")
	mint := flag.String("mint-token", "", "print an HS256 token for this user ID, signed with -jwt-secret, valid for -token-ttl, and exit (development)")
	tokenTTL := flag.Duration("token-ttl", time.Hour, "lifetime of a token made by -mint-token")
	flag.BoolVar(&opts.InsecureDevAuth, "insecure-dev-auth", false, "INSECURE: take the user ID from ?user= (demo and load tests only)")
	flag.StringVar(&opts.AdminAddr, "admin-addr", "", "optional address of this process alone for /healthz, /readyz, /metrics and /debug/stats (needed with -reuseport)")
	flag.BoolVar(&opts.ReusePort, "reuseport", false, "open -addr and -raw-addr with SO_REUSEPORT, so that several server processes share a port")
	flag.BoolVar(&opts.KeepMemory, "keep-memory", false, "do not run collections and return free memory to the OS when a burst of 1,000+ connects or closes has settled")
	flag.BoolVar(&opts.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ (profiling only)")
	flag.BoolVar(&verbose, "v", false, "debug logging")
	if err := flagsFromEnv(flag.CommandLine, os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "realtime:", err)
		os.Exit(2)
	}
	flag.Parse()
	if opts.Pprof && memProfileOff {
		runtime.MemProfileRate = defaultMemProfileRate
	}
	opts.BurstGCPercent = setGCPercent()
	if *jwtSecret != "" {
		opts.JWTSecret = []byte(*jwtSecret)
	}
	if *mint != "" {
		os.Exit(mintToken(opts.JWTSecret, *mint, *tokenTTL))
	}
	if *redis != "" {
		opts.RedisAddrs = strings.Split(*redis, ",")
	}

	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, opts, logger, nil); err != nil {
		fmt.Fprintln(os.Stderr, "realtime:", err)
		os.Exit(1)
	}
}

// flagsFromEnv gives every flag of fs an environment variable:
// REALTIME_ and the flag's name in upper case, '-' as '_' (-history-size:
// REALTIME_HISTORY_SIZE). A variable that is set and not empty sets the flag
// before the command line is parsed, so the command line still wins; a value
// the flag refuses is an error. Each flag's usage names its variable; the
// defaults it prints stay the built-in ones (a secret set in the
// environment is never printed). A command (commandLineOnly) has none: one
// left in a pod's environment would run instead of the server.
func flagsFromEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if commandLineOnly[f.Name] {
			return
		}
		name := envName(f.Name)
		f.Usage += " (env " + name + ")"
		if v, ok := lookup(name); ok && v != "" && err == nil {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s: %w", name, serr) // not the value: it may be a secret
			}
		}
	})
	return err
}

// commandLineOnly are the flags that make the binary do something else than
// serve: -mint-token prints a token and exits, so REALTIME_MINT_TOKEN left
// in a deployment's environment would stop every pod from serving (and
// print a valid token into its logs).
var commandLineOnly = map[string]bool{"mint-token": true}

// envName is the environment variable of flag name.
func envName(name string) string {
	return "REALTIME_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// serverGCPercent is the server's GOGC unless the environment sets one. Its
// heap is almost all long-lived connection state, and the default of 100
// lets the garbage of handshakes grow it to twice that before a collection.
// Measured here (out/bin/loadtest -conns 10000 -repeat 1 -targets
// realtime-raw,realtime-http, RSS 3 s after the ramp, no forced GC):
// GOGC=100 1,773 / 1,838 B per connection, 50: 1,226 / 1,505, 25: 1,050 /
// 1,160, with no rise in CPU per delivery (4.77 / 4.29 µs at 25).
//
// During a burst of connects it is burstGCPercent instead (server.Options
// BurstGCPercent): at 25 a storm collected every few hundred handshakes.
// out/bin/loadtest -targets realtime-http,realtime-raw -conns 10000 -msgs 5
// -repeat 1, with GOGC=100 and GOGC=25 alternated, twice: server CPU per
// connect 127/114 vs 167/124 µs (net/http door), 61/53 vs 79/71 µs (raw
// door).
const (
	serverGCPercent = 25
	burstGCPercent  = 100
)

// setGCPercent sets the server's GOGC unless the environment set one, and
// returns the GOGC bursts get (0: the environment's stays).
func setGCPercent() int {
	if os.Getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(serverGCPercent)
	return burstGCPercent
}

// mintToken prints a token for user (the -mint-token flag) and returns the
// exit status.
func mintToken(secret []byte, user string, ttl time.Duration) int {
	if len(secret) == 0 {
		fmt.Fprintln(os.Stderr, "realtime: -mint-token needs -jwt-secret (or REALTIME_JWT_SECRET)")
		return 2
	}
	tok, err := server.MintToken(secret, user, ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realtime:", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}
