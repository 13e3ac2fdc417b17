package realtime_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/realtimehub/realtime"
)

// The original usage: a hub, a handler, mounted on a router.
func Example() {
	logger := slog.Default()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	hub := realtime.NewHub(logger)
	go hub.Run(ctx) // when ctx ends: close 1001 to every client, flush, stop

	handler := realtime.NewHandler(hub, logger, realtime.HandlerConfig{
		Broadcaster: nil, // single pod
	})
	mux := http.NewServeMux()
	mux.Handle("/ws", handler.Routes()) // with chi: r.Mount("/ws", handler.Routes())
	_ = mux
}

// The high-scale door: raw TCP with the zero-copy upgrade, beside or instead
// of net/http, feeding the same hub.
func ExampleHandler_Serve() {
	hub := realtime.NewHub(nil)
	handler := realtime.NewHandler(hub, nil, realtime.HandlerConfig{
		Authenticate: func(r *http.Request) (string, error) {
			return r.URL.Query().Get("user"), nil // use a signed token in production
		},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go handler.Serve(ln) // returns ErrHandlerClosed after Shutdown
	handler.Shutdown(context.Background())
}

// Server code broadcasts to a room; every member's connection gets the same
// encoded frame.
func ExampleShardedHub_Broadcast() {
	hub := realtime.NewHub(nil)
	msg, _ := realtime.SystemMessage(realtime.MessageTypeNotification, map[string]string{"text": "deploy at 5pm"})
	msg.Room = "ops"
	hub.Broadcast(msg) // nobody in "ops" yet: a no-op
	fmt.Println(hub.RoomCount("ops"))
	// Output: 0
}

// Server code publishes into a room's history: members on every pod get it
// with its offset, and a client that was away recovers it when it rejoins
// with "since". A user's personal room reaches all of the user's devices.
func ExampleHandler_Publish() {
	hub := realtime.NewHub(nil)
	handler := realtime.NewHandler(hub, nil, realtime.HandlerConfig{}) // history on: last 100 messages, 5 min
	msg, _ := realtime.SystemMessage(realtime.MessageTypeNotification, map[string]string{"text": "your order shipped"})
	msg.Room = realtime.UserRoom("alice") // "~alice": only alice may join it
	if err := handler.Publish(context.Background(), msg); err != nil {
		fmt.Println(err)
	}
	fmt.Println(msg.Room, msg.Offset)
	// Output: ~alice 1
}
