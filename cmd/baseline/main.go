// Command baseline is the classic goroutine-per-connection WebSocket hub
// (gorilla/websocket), served the way the load test measures a server: /ws,
// /healthz and /debug/stats. It exists only to be measured beside ours: the
// load test starts it as a process of its own, so that every figure is a
// ratio taken in the same run. It is not a product.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/realtimehub/realtime/cmd/internal/debugstats"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "HTTP listen address (/ws, /healthz, /debug/stats)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	hub := New(logger)
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.Handle("/debug/stats", debugstats.Handler(hub.Connections))
	srv := &http.Server{Addr: *addr, Handler: mux}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}
