package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The upgrade, and what wsClient promises, against gorilla's server (the
// baseline's) and hand-written ones; where the behaviour is wsClient's,
// both clients are tested. The frames gorilla's server would never send
// are in wsclient_lean_frames_test.go.

// clientKinds are the two wsClient implementations.
var clientKinds = []struct {
	name string
	dial func(ctx context.Context, i int, url string) (wsClient, error)
}{
	{name: clientLean, dial: func(ctx context.Context, i int, url string) (wsClient, error) {
		c, err := dialLean(ctx, i, url)
		if err != nil {
			return nil, err
		}
		return c, nil
	}},
	{name: clientGorilla, dial: dialGorilla},
}

// gorillaServer serves WebSocket connections with gorilla's Upgrader, each
// handled by serve, and returns the ws:// URL of path /ws. The request of
// the last upgrade goes to reqs when it has room.
func gorillaServer(t *testing.T, reqs chan *http.Request, serve func(*websocket.Conn)) string {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case reqs <- r:
		default:
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// rawServer accepts TCP connections, reads each one's request head and
// hands the connection to serve; it returns the ws:// URL.
func rawServer(t *testing.T, serve func(c net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				head := make([]byte, 0, 1024)
				for !bytes.Contains(head, []byte("\r\n\r\n")) {
					b := make([]byte, 1024)
					n, err := c.Read(b)
					if err != nil {
						return
					}
					head = append(head, b[:n]...)
				}
				serve(c)
			}()
		}
	}()
	return "ws://" + ln.Addr().String() + "/ws"
}

// switched is a 101 response to the client's fixed key.
const switched = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

func dialTest(t *testing.T, url string) *leanConn {
	t.Helper()
	c, err := dialLean(context.Background(), 0, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The upgrade: path and query, Host, no Origin; gorilla accepts it, and a
// masked message goes there and back intact at every length encoding.
func TestLeanHandshakeAndEcho(t *testing.T) {
	reqs := make(chan *http.Request, 1)
	url := gorillaServer(t, reqs, func(c *websocket.Conn) {
		for {
			_, b, err := c.ReadMessage()
			if err != nil || c.WriteMessage(websocket.TextMessage, b) != nil {
				return
			}
		}
	})
	for _, k := range clientKinds {
		c, err := k.dial(context.Background(), 0, url+"?user=u1")
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		r := <-reqs
		host, _, _ := strings.Cut(strings.TrimPrefix(url, "ws://"), "/")
		if r.URL.RequestURI() != "/ws?user=u1" || r.Host != host || r.Header.Get("Origin") != "" {
			t.Errorf("%s: request %s host %s origin %q", k.name, r.URL.RequestURI(), r.Host, r.Header.Get("Origin"))
		}
		for _, n := range []int{0, 1, 125, 126, 0xFFFF, 0x10000, 1 << 20} {
			p := bytes.Repeat([]byte("0123456789abcdefg"), n/17+1)[:n]
			if err := c.WriteText(p); err != nil {
				t.Fatalf("%s: write %d: %v", k.name, n, err)
			}
			if got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("%s: echo of %d bytes: %d bytes back, %v", k.name, n, len(got), err)
			}
		}
		c.Close()
	}
}

// An upgrade that fails: the reason is told apart, and a 503's Retry-After
// reaches the caller (dialRetry and reconnect wait that long).
func TestLeanUpgradeRefused(t *testing.T) {
	respond := func(resp string) string {
		return rawServer(t, func(c net.Conn) { c.Write([]byte(resp)) })
	}
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	for _, tc := range []struct {
		name string
		url  string
		want error
	}{
		{name: "bad accept", url: respond(strings.Replace(switched, "s3pP", "xxxx", 1)), want: errBadAccept},
		{name: "no upgrade header", url: respond(strings.Replace(switched, "Upgrade: websocket\r\n", "", 1)), want: errNotUpgraded},
		{name: "head too long", url: respond("HTTP/1.1 101 Switching Protocols\r\nX: " + strings.Repeat("x", 5000)), want: errResponseHead},
		{name: "not HTTP", url: respond("SSH-2.0-OpenSSH\r\n\r\n"), want: errResponseHead},
		{name: "wss", url: "wss://127.0.0.1:1/ws", want: errNotWS},
		{name: "503", url: "ws" + strings.TrimPrefix(busy.URL, "http") + "/ws"},
	} {
		_, err := dialLean(context.Background(), 0, tc.url)
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, k := range clientKinds {
		_, err := k.dial(context.Background(), 0, "ws"+strings.TrimPrefix(busy.URL, "http")+"/ws")
		var r *dialRefusal
		if !errors.As(err, &r) || r.Status != 503 || r.RetryAfter != "7" {
			t.Fatalf("%s: %v, want a 503 refusal with Retry-After 7", k.name, err)
		}
		if wait, is503 := serviceUnavailable(err); !is503 || wait != 7*time.Second {
			t.Errorf("%s: throttled %v %v", k.name, wait, is503)
		}
	}
}

// Frames the server sends right behind the 101, in the same segment, are
// the first messages.
func TestLeanFramesBehindTheUpgrade(t *testing.T) {
	url := rawServer(t, func(c net.Conn) {
		b := append([]byte(switched), frame(opText, true, []byte("first"))...)
		c.Write(append(b, frame(opText, true, []byte("second"))...))
		time.Sleep(time.Second)
	})
	c := dialTest(t, url)
	for _, want := range []string{"first", "second"} {
		if got, err := c.ReadMessage(); err != nil || string(got) != want {
			t.Fatalf("%q %v, want %q", got, err, want)
		}
	}
}

// A ping from gorilla's server is answered with a pong that carries its
// payload, by either client, while it reads.
func TestPingAnswered(t *testing.T) {
	pongs := make(chan string, 1)
	url := gorillaServer(t, nil, func(c *websocket.Conn) {
		c.SetPongHandler(func(s string) error { pongs <- s; return nil })
		c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
		c.ReadMessage() // runs the pong handler; ends when the client closes
	})
	for _, k := range clientKinds {
		c, err := k.dial(context.Background(), 0, url)
		if err != nil {
			t.Fatal(err)
		}
		go c.ReadMessage()
		select {
		case got := <-pongs:
			if got != "are you there" {
				t.Errorf("%s: pong %q", k.name, got)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no pong", k.name)
		}
		c.Close()
	}
}

// A close frame ends the reading with its code, and is answered with one
// echoing the code.
func TestCloseFromServer(t *testing.T) {
	echoed := make(chan int, 1)
	url := gorillaServer(t, nil, func(c *websocket.Conn) {
		c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			echoed <- ce.Code
		} else {
			echoed <- -1
		}
	})
	for _, k := range clientKinds {
		c, err := k.dial(context.Background(), 0, url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ReadMessage()
		var ce *closeError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
			t.Errorf("%s: %v, want close 4001 bye", k.name, err)
		}
		if code := <-echoed; code != 4001 {
			t.Errorf("%s: the server got close %d back, want 4001", k.name, code)
		}
		if k.name == clientLean {
			if _, again := c.ReadMessage(); again != err {
				t.Errorf("read after close: %v", again)
			}
			if err := c.WriteText([]byte("late")); !errors.Is(err, errCloseSent) {
				t.Errorf("write after close: %v", err)
			}
		}
		c.Close()
	}
}

// dialRetry comes back after a 503 as its Retry-After says, whichever
// client dials.
func TestDialRetryHonours503(t *testing.T) {
	defer func(old string) { wsClientKind = old }(wsClientKind)
	var calls atomic.Int32
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if c, err := up.Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	defer srv.Close()
	for _, k := range clientKinds {
		wsClientKind = k.name
		c, err := dialRetry(context.Background(), 0, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
		if err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		c.Close()
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d upgrades asked, want 4 (each client turned away once)", n)
	}
}
