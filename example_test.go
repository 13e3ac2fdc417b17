package realtime_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

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

// The server API: a backend publishes, asks who is online and disconnects
// users over HTTP, behind its own authorization.
func ExampleNewAPI() {
	hub := realtime.NewHub(nil)
	handler := realtime.NewHandler(hub, nil, realtime.HandlerConfig{})
	api := realtime.NewAPI(handler, realtime.APIConfig{
		Authorize: func(r *http.Request) error {
			if r.Header.Get("Authorization") != "apikey s3cret" {
				return errors.New("wrong API key") // 401
			}
			return nil
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/api/", api) // POST /api/publish, GET /api/presence, POST /api/disconnect
	mux.Handle("/ws", handler.Routes())
	_ = mux
}

// A user's connections on every pod: a notification to each of them, and
// a ban.
func ExampleHandler_PublishToUser() {
	hub := realtime.NewHub(nil)
	handler := realtime.NewHandler(hub, nil, realtime.HandlerConfig{})
	ctx := context.Background()
	note, _ := realtime.SystemMessage(realtime.MessageTypeNotification, map[string]int{"unread": 3})
	fmt.Println(handler.PublishToUser(ctx, "alice", note))
	fmt.Println(handler.DisconnectUser(ctx, "mallory")) // close 3003 on every pod
	n, _ := handler.UserConnections(ctx, "alice")
	fmt.Println(n)
	// Output:
	// <nil>
	// <nil>
	// 0
}

// An identity with an expiry: the connection is closed with 3000 at
// ExpiresAt unless the client sends a refresh with a token Refresh accepts.
func ExampleHandlerConfig_identity() {
	verify := func(token string) (*realtime.Identity, error) { // your token check
		if token == "" {
			return nil, errors.New("no token")
		}
		return &realtime.Identity{UserID: token, ExpiresAt: time.Now().Add(time.Hour), Claims: map[string]any{"role": "member"}}, nil
	}
	cfg := realtime.HandlerConfig{
		AuthenticateIdentity: func(r *http.Request) (*realtime.Identity, error) { return verify(r.URL.Query().Get("token")) },
		Refresh:              func(_ context.Context, token string) (*realtime.Identity, error) { return verify(token) },
		AuthorizeJoinContext: func(_ context.Context, id *realtime.Identity, room string) error {
			if room == "staff" && id.Claims["role"] != "staff" {
				return errors.New("staff only")
			}
			return nil
		},
	}
	_ = realtime.NewHandler(realtime.NewHub(nil), nil, cfg)
}
