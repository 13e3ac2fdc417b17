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
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/realtimehub/realtime/cmd/realtime/internal/server"
)

func main() {
	var (
		opts    server.Options
		verbose bool
	)
	flag.StringVar(&opts.Addr, "addr", envOr("REALTIME_ADDR", "127.0.0.1:8080"), "HTTP listen address (/ws, /healthz, /debug/stats)")
	flag.StringVar(&opts.RawAddr, "raw-addr", os.Getenv("REALTIME_RAW_ADDR"), "optional raw-TCP WebSocket listen address (zero-copy upgrade)")
	flag.StringVar(&opts.Handler.PodID, "pod-id", os.Getenv("REALTIME_POD_ID"), "pod ID prefixing connection IDs (default random)")
	flag.IntVar(&opts.Shards, "shards", 0, "hub lock stripes (default 8×GOMAXPROCS)")
	flag.Float64Var(&opts.Handler.RateLimit, "rate-limit", 0, "messages per second per connection (default 50; negative: off)")
	flag.IntVar(&opts.Handler.SendQueueBytes, "send-queue-bytes", 0, "bytes queued per connection before it counts as a slow consumer (default 1 MiB)")
	flag.IntVar(&opts.Handler.SendQueueSize, "send-queue", 0, "frames queued per connection before it counts as a slow consumer (default: no limit but -send-queue-bytes)")
	flag.IntVar(&opts.Handler.MaxRoomsPerConn, "max-rooms", 0, "rooms per connection (default 100)")
	flag.BoolVar(&opts.Handler.DisableJoinLeaveEvents, "no-join-events", false, "do not send join/leave events to rooms")
	flag.Float64Var(&opts.Handler.AcceptRate, "accept-rate", envFloat("REALTIME_ACCEPT_RATE"), "upgrades per second before clients get 503 + Retry-After (default 20000; negative: off)")
	flag.Float64Var(&opts.Handler.DrainRate, "drain-rate", envFloat("REALTIME_DRAIN_RATE"), "connections closed per second at shutdown, each with a reconnect hint (default 5000)")
	flag.DurationVar(&opts.Handler.DrainWindow, "drain-window", envDuration("REALTIME_DRAIN_WINDOW"), "longest the shutdown drain may take (default 10s)")
	flag.IntVar(&opts.Handler.HistorySize, "history-size", envInt("REALTIME_HISTORY_SIZE"), "messages each room keeps for clients that rejoin with since (in memory on one pod, in Redis streams with -redis; default 100; -1: no history, no offsets)")
	flag.DurationVar(&opts.Handler.HistoryTTL, "history-ttl", envDuration("REALTIME_HISTORY_TTL"), "how long a room's messages stay recoverable (default 5m)")
	redis := flag.String("redis", os.Getenv("REALTIME_REDIS"), "Redis address(es), comma-separated: links pods (empty: single pod)")
	flag.BoolVar(&opts.RedisCluster, "redis-cluster", false, "the Redis addresses are Redis Cluster nodes")
	jwtSecret := flag.String("jwt-secret", os.Getenv("REALTIME_JWT_SECRET"), "HS256 secret: clients need a signed token (sub = user ID) in Authorization: Bearer or ?token=")
	flag.StringVar(&opts.APIKey, "api-key", os.Getenv("REALTIME_API_KEY"), "serve the server API under /api/ to requests with Authorization: apikey KEY (empty: /api/ is 404)")
	mint := flag.String("mint-token", "", "print an HS256 token for this user ID, signed with -jwt-secret, valid for -token-ttl, and exit (development)")
	tokenTTL := flag.Duration("token-ttl", time.Hour, "lifetime of a token made by -mint-token")
	flag.BoolVar(&opts.InsecureDevAuth, "insecure-dev-auth", false, "INSECURE: take the user ID from ?user= (demo and load tests only)")
	flag.StringVar(&opts.AdminAddr, "admin-addr", os.Getenv("REALTIME_ADMIN_ADDR"), "optional address of this process alone for /healthz, /readyz, /metrics and /debug/stats (needed with -reuseport)")
	flag.BoolVar(&opts.ReusePort, "reuseport", false, "open -addr and -raw-addr with SO_REUSEPORT, so that several server processes share a port")
	flag.BoolVar(&opts.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ (profiling only)")
	flag.BoolVar(&verbose, "v", false, "debug logging")
	flag.Parse()
	setGCPercent()
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

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envInt returns the integer in the environment variable key, or 0.
func envInt(key string) int {
	n, _ := strconv.Atoi(os.Getenv(key))
	return n
}

// envFloat returns the number in the environment variable key, or 0.
func envFloat(key string) float64 {
	f, _ := strconv.ParseFloat(os.Getenv(key), 64)
	return f
}

// envDuration returns the duration in the environment variable key, or 0.
func envDuration(key string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(key))
	return d
}

// serverGCPercent is the server's GOGC unless the environment sets one. Its
// heap is almost all long-lived connection state, and the default of 100
// lets the garbage of handshakes grow it to twice that before a collection.
// Measured here (out/bin/loadtest -conns 10000 -repeat 1 -targets
// realtime-raw,realtime-http, RSS 3 s after the ramp, no forced GC):
// GOGC=100 1,773 / 1,838 B per connection, 50: 1,226 / 1,505, 25: 1,050 /
// 1,160, with no rise in CPU per delivery (4.77 / 4.29 µs at 25).
const serverGCPercent = 25

func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
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
