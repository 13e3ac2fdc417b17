// Package server wires the realtime library into a runnable server: the hub,
// the handler's two doors, the demo page at /, /healthz, /readyz, /metrics
// (Prometheus) and /debug/stats. cmd/realtime and the
// load test's server processes both run it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/rueidis"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/cmd/internal/debugstats"
	"github.com/realtimehub/realtime/metrics"
)

// Options configures Run. The zero value serves on 127.0.0.1:8080.
type Options struct {
	// Addr is the public HTTP address (/ws, the demo page, /healthz,
	// /readyz, /metrics). Default 127.0.0.1:8080.
	Addr string
	// RawAddr, if set, is a raw-TCP WebSocket listener (Handler.Serve).
	RawAddr string
	// Shards sets the hub's lock stripes (0: default).
	Shards int
	// Handler is the handler configuration.
	Handler realtime.HandlerConfig
	// InsecureDevAuth takes the user ID from ?user= (demo and tests only).
	InsecureDevAuth bool
	// JWTSecret, if set, requires HS256 tokens signed with it ("sub" is the
	// user ID, "exp" required: the connection is closed with 3000 then
	// unless the client refreshes), in "Authorization: Bearer" or ?token=.
	JWTSecret []byte
	// APIKey, if set, serves the server API (realtime.NewAPI) under /api/
	// on the public and admin listeners, to requests with
	// "Authorization: apikey <APIKey>". Empty: /api/ answers 404.
	APIKey string
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener (profiling only).
	Pprof bool
	// RedisAddrs, if set, links pods through Redis (several addresses, or
	// RedisCluster, for a Redis Cluster). Empty: single pod.
	RedisAddrs []string
	// ReusePort opens Addr and RawAddr with SO_REUSEPORT, so that several
	// server processes (pods) share one port and the kernel spreads
	// connections over them.
	ReusePort bool
	// AdminAddr, if set, serves /healthz, /readyz, /metrics and the debug
	// endpoints (/debug/stats, /debug/pprof/) on an address of this process
	// alone (with ReusePort, Addr is shared). The debug endpoints are never
	// served on the public Addr: /debug/stats?gc=1 forces a collection, which
	// anyone could loop to slow everyone down. Empty: no admin listener.
	AdminAddr string
	// PresenceTTL is how long a dead pod's presence entries keep counting
	// (0: the broadcaster's default, 30 s).
	PresenceTTL time.Duration
	// RedisCluster says RedisAddrs are cluster nodes (sharded pub/sub works
	// on both; this only makes a single address be treated as a cluster).
	RedisCluster bool
	// KeepMemory turns off the release after bursts: by default, once 1,000
	// or more connects and closes have settled (see release.go), the server
	// runs two garbage collections and returns free memory to the OS (the
	// handshakes' garbage), as a JVM's periodic collection does.
	KeepMemory bool
	// BurstGCPercent is GOGC while a burst of connects and closes lasts (see
	// release.go), restored after it: a
	// storm's handshakes then pay fewer collections, and the heap it grows
	// is returned by the release. 0 leaves the collector alone; the binary
	// sets 100 when it set GOGC itself.
	BurstGCPercent int
}

// Run serves until ctx ends, then shuts down gracefully: every WebSocket gets
// close 1001 and its queued frames are flushed. ready, if not nil, is called
// once the listeners are open.
func Run(ctx context.Context, opts Options, logger *slog.Logger, ready func()) error {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:8080"
	}
	hub := newHub(opts, logger)
	cfg := opts.Handler
	rb, closeRedis, err := newBroadcaster(opts, hub, logger)
	if err != nil {
		return err
	}
	defer closeRedis()
	if rb != nil {
		cfg.Broadcaster = rb
	}
	configureAuth(&cfg, opts, logger)
	handler := realtime.NewHandler(hub, logger, cfg)
	mux, adminMux := routes(opts, hub, handler, rb)
	srv := newHTTPServer(mux)

	ln, rawLn, err := listen(opts)
	if err != nil {
		return err
	}
	closeAdmin, err := serveAdmin(opts.AdminAddr, adminMux)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeAdmin()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hubDone, rbDone := runBackground(ctx, hub, rb)
	if !opts.KeepMemory || opts.BurstGCPercent > 0 {
		go watchBursts(ctx, handler.Turnover, opts.BurstGCPercent, !opts.KeepMemory)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if rawLn != nil {
		go func() { errc <- handler.Serve(rawLn) }()
	}
	logger.Info("realtime listening", "addr", ln.Addr().String(), "raw_addr", opts.RawAddr, "pod", handler.Config().PodID)
	if ready != nil {
		ready()
	}

	runErr := waitForStop(ctx, errc)
	logger.Info("shutting down")
	cancel()
	<-hubDone // the hub's Run shuts the handler down: 1001 to every client
	<-rbDone
	closeHTTP(srv, logger)
	return runErr
}

// httpGrace is how long plain HTTP requests in flight (a /metrics scrape)
// get at shutdown; WebSockets are the hub's, already closed with 1001.
const httpGrace = time.Second

// closeHTTP stops srv: requests in flight get httpGrace, then whatever is
// left is closed. A client that sent half a request is not waited for (it
// made the process exit with status 1 after 5 s): that is not an error.
func closeHTTP(srv *http.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), httpGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Info("closing HTTP connections left after the grace period", "err", err)
		srv.Close()
	}
}

// newHub makes the hub with opts.Shards lock stripes (the library's default
// when 0).
func newHub(opts Options, logger *slog.Logger) *realtime.ShardedHub {
	var hubOpts []realtime.HubOption
	if opts.Shards > 0 {
		hubOpts = append(hubOpts, realtime.WithShards(opts.Shards))
	}
	return realtime.NewHub(logger, hubOpts...)
}

// newBroadcaster links this pod to the others through Redis when
// opts.RedisAddrs is set. It returns a nil broadcaster for a single pod, and
// a function that closes the Redis client (a no-op without one).
func newBroadcaster(opts Options, hub *realtime.ShardedHub, logger *slog.Logger) (*realtime.RedisBroadcaster, func(), error) {
	if len(opts.RedisAddrs) == 0 {
		return nil, func() {}, nil
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  opts.RedisAddrs,
		DisableCache: true,
		// Concurrent publishes share writes: about 2.5x the throughput
		// of no delay, for at most 20 µs (bench: BenchmarkPublish).
		MaxFlushDelay:     20 * time.Microsecond,
		ForceSingleClient: !opts.RedisCluster && len(opts.RedisAddrs) == 1,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("redis %v: %w", opts.RedisAddrs, err)
	}
	var bopts []realtime.BroadcasterOption
	if opts.PresenceTTL > 0 {
		bopts = append(bopts, realtime.WithPresenceTTL(opts.PresenceTTL))
	}
	if opts.Handler.PodID != "" {
		bopts = append(bopts, realtime.WithPodID(opts.Handler.PodID))
	}
	if opts.Handler.HistorySize != 0 || opts.Handler.HistoryTTL != 0 {
		bopts = append(bopts, realtime.WithHistory(opts.Handler.HistorySize, opts.Handler.HistoryTTL))
	}
	return realtime.NewRedisBroadcaster(client, hub, logger, bopts...), client.Close, nil
}

// configureAuth sets the handler's authentication from the options: JWT when a secret is
// given, else the insecure ?user= of demos and tests; otherwise it leaves the
// handler configuration's own.
func configureAuth(cfg *realtime.HandlerConfig, opts Options, logger *slog.Logger) {
	switch {
	case len(opts.JWTSecret) > 0:
		cfg.AuthenticateIdentity = jwtIdentity(opts.JWTSecret)
		cfg.Refresh = jwtRefresh(opts.JWTSecret)
	case opts.InsecureDevAuth:
		logger.Warn("INSECURE dev auth: any client can pick its user ID with ?user=")
		cfg.Authenticate = func(r *http.Request) (string, error) { return r.URL.Query().Get("user"), nil }
	}
}

// routes is the server's HTTP surface: the WebSocket door, health and
// readiness (readiness follows Redis when pods are linked), stats, metrics,
// routes returns the public mux (the WebSocket door, the demo page, health,
// readiness and metrics) and the admin mux (the same plus the debug
// endpoints, which are never public).
func routes(opts Options, hub *realtime.ShardedHub, handler *realtime.Handler, rb *realtime.RedisBroadcaster) (public, admin *http.ServeMux) {
	public, admin = http.NewServeMux(), http.NewServeMux()
	health := func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }
	ready := func(w http.ResponseWriter, _ *http.Request) {
		if rb != nil {
			if err := rb.Ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(metrics.Sources{Hub: hub, Handler: handler, Broadcaster: rb}), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, mux := range []*http.ServeMux{public, admin} {
		mux.HandleFunc("/healthz", health)
		mux.HandleFunc("/readyz", ready)
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	var api http.Handler = http.HandlerFunc(apiOff)
	if opts.APIKey != "" {
		api = realtime.NewAPI(handler, realtime.APIConfig{Authorize: apiKeyAuth(opts.APIKey)})
	}
	public.Handle("/api/", api)
	admin.Handle("/api/", api)
	public.Handle("/ws", handler.Routes())
	public.Handle("/", demoPage())
	admin.Handle("/debug/stats", debugstats.Handler(hub.ConnectionCount))
	if opts.Pprof {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	return public, admin
}

// apiOff answers /api/ when the server API is off (no -api-key): 404, with
// the API's error body.
func apiOff(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"error":{"code":"not_found","message":"the server API is off (start the server with -api-key)"}}` + "\n"))
}

// newHTTPServer returns the server of a listener: headers bounded as the raw
// door bounds them (431 past realtime.MaxHandshakeBytes), a deadline for
// them.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: realtime.MaxHandshakeBytes}
}

// listen opens the HTTP door's listener and, if opts.RawAddr is set, the raw
// door's, both with SO_REUSEPORT when opts.ReusePort says several pods share
// the ports. rawLn is nil without a raw door.
func listen(opts Options) (ln, rawLn net.Listener, err error) {
	var lc net.ListenConfig
	if opts.ReusePort {
		lc.Control = reusePort
	}
	ln, err = lc.Listen(context.Background(), "tcp", opts.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", opts.Addr, err)
	}
	if opts.RawAddr != "" {
		// No TCP keep-alive on the raw door: its sockets are WebSockets,
		// whose heartbeat finds a dead peer, and each accept would spend
		// four setsockopt calls arming it.
		rawLC := lc
		rawLC.KeepAlive = -1
		if rawLn, err = rawLC.Listen(context.Background(), "tcp", opts.RawAddr); err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("listen %s: %w", opts.RawAddr, err)
		}
	}
	return ln, rawLn, nil
}

// serveAdmin serves mux on addr, an address of this process alone (with
// SO_REUSEPORT the main one is shared, so per-pod figures need their own).
// Empty addr serves nothing. It returns a function that closes the server.
func serveAdmin(addr string, mux http.Handler) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	adminLn, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	admin := newHTTPServer(mux)
	go admin.Serve(adminLn)
	return func() { admin.Close() }, nil
}

// runBackground runs the hub until ctx ends and, if there is one, the
// broadcaster until the hub's Run has returned; each returned channel is closed when its Run has returned, so that
// shutdown can wait for the hub to close every connection.
func runBackground(ctx context.Context, hub *realtime.ShardedHub, rb *realtime.RedisBroadcaster) (hubDone, rbDone chan struct{}) {
	hubDone, rbDone = make(chan struct{}), make(chan struct{})
	go func() { hub.Run(ctx); close(hubDone) }()
	if rb != nil {
		// The broadcaster outlives the hub's shutdown: the drain's leave
		// events and presence writes still go out through it.
		rbCtx, stop := context.WithCancel(context.Background())
		go func() { <-hubDone; stop() }()
		go func() { rb.Run(rbCtx); close(rbDone) }()
	} else {
		close(rbDone)
	}
	return hubDone, rbDone
}

// waitForStop blocks until ctx ends or a server stops serving, and returns
// that server's error unless it is the normal one of a closed server.
func waitForStop(ctx context.Context, errc <-chan error) error {
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, realtime.ErrHandlerClosed) {
			return err
		}
	}
	return nil
}
