package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// TestMain lets the test binary run as a server process (RT_SERVE_ADDR set),
// so that the two-process test runs real, separate pods.
func TestMain(m *testing.M) {
	if addr := os.Getenv("RT_SERVE_ADDR"); addr != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := Run(ctx, Options{
			PresenceTTL:     time.Second,
			Addr:            addr,
			RedisAddrs:      []string{os.Getenv("RT_SERVE_REDIS")},
			InsecureDevAuth: true,
			Handler:         realtime.HandlerConfig{PodID: os.Getenv("RT_SERVE_POD")},
		}, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startProc starts the test binary as a server process for pod, and waits
// until its pub/sub link delivers.
func startProc(t *testing.T, pod, redisAddr string) (addr string, cmd *exec.Cmd) {
	addr = freeAddr(t)
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RT_SERVE_ADDR="+addr, "RT_SERVE_REDIS="+redisAddr, "RT_SERVE_POD="+pod)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 50*time.Millisecond, "%s ready (its pub/sub link delivers)", pod)
	return addr, cmd
}

// A pod whose process is killed (no chance to clean up) leaves no ghost:
// once its presence lease expires, its users are offline and out of rooms
// for every other pod.
func TestKilledPodLeavesNoGhost(t *testing.T) {
	redis := redistest.Start(t)
	addr, cmd := startProc(t, "doomed", redis.Addr)
	hub := realtime.NewHub(slog.New(slog.DiscardHandler))
	observer := realtime.NewRedisBroadcaster(redistest.Client(t, redis.Addr), hub, slog.New(slog.DiscardHandler), realtime.WithPodID("observer"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go observer.Run(ctx)

	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?user=bob", nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WriteJSON(map[string]string{"type": "join", "room": "r"}))
	require.Eventually(t, func() bool {
		online, err := observer.Online(ctx, "bob")
		users, err2 := observer.RoomUsers(ctx, "r")
		return err == nil && err2 == nil && online && len(users) == 1 && users[0] == "bob"
	}, 5*time.Second, 20*time.Millisecond)

	require.NoError(t, cmd.Process.Kill())
	died := time.Now()
	require.Eventually(t, func() bool {
		online, err := observer.Online(ctx, "bob")
		users, err2 := observer.RoomUsers(ctx, "r")
		return err == nil && err2 == nil && !online && len(users) == 0
	}, 5*time.Second, 20*time.Millisecond, "bob's entries stop counting after the 1s TTL")
	t.Logf("ghost gone %s after the kill (TTL 1s)", time.Since(died).Round(10*time.Millisecond))
}

// Two server processes behind one Redis, real WebSocket clients on each:
// room messages and direct messages cross the process boundary.
func TestTwoProcesses(t *testing.T) {
	redis := redistest.Start(t)
	var addrs []string
	for i := range 2 {
		addr, _ := startProc(t, fmt.Sprintf("proc%d", i), redis.Addr)
		addrs = append(addrs, addr)
	}
	type msg struct {
		Type, Room, From, To string
		Data                 json.RawMessage
	}
	dial := func(addr, user string) (*websocket.Conn, string) {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?user="+user, nil)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		var m msg
		require.NoError(t, c.ReadJSON(&m))
		var d realtime.ConnectedData
		require.NoError(t, json.Unmarshal(m.Data, &d))
		require.NoError(t, c.WriteJSON(map[string]string{"type": "join", "room": "r"}))
		return c, d.ConnectionID
	}
	next := func(c *websocket.Conn, typ string) msg {
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var m msg
			require.NoError(t, c.ReadJSON(&m))
			if m.Type == typ {
				return m
			}
		}
	}
	a, aID := dial(addrs[0], "alice")
	b, bID := dial(addrs[1], "bob")
	assert.True(t, strings.HasPrefix(aID, "proc0.") && strings.HasPrefix(bID, "proc1."), "%s %s", aID, bID)
	next(a, "join")
	next(b, "join")
	// The second process may not hear room r yet: publish until it does.
	// One reader goroutine per client (a gorilla read that times out leaves
	// the connection failed, so no read deadlines here).
	chats := func(c *websocket.Conn) <-chan msg {
		ch := make(chan msg, 64)
		go func() {
			defer close(ch)
			for {
				var m msg
				if c.ReadJSON(&m) != nil {
					return
				}
				if m.Type == "chat" {
					ch <- m
				}
			}
		}()
		return ch
	}
	aChats, bChats := chats(a), chats(b)
	require.Eventually(t, func() bool {
		a.WriteJSON(map[string]any{"type": "chat", "room": "r", "data": "probe"})
		select {
		case <-bChats:
			return true
		case <-time.After(300 * time.Millisecond):
			return false
		}
	}, 15*time.Second, 10*time.Millisecond)
	wait := func(ch <-chan msg, data string) msg {
		t.Helper()
		for {
			select {
			case m, ok := <-ch:
				require.True(t, ok, "connection closed")
				if string(m.Data) == data {
					return m
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s", data)
			}
		}
	}
	require.NoError(t, a.WriteJSON(map[string]any{"type": "chat", "room": "r", "data": "hello"}))
	assert.Equal(t, aID, wait(bChats, `"hello"`).From)
	require.NoError(t, b.WriteJSON(map[string]any{"type": "chat", "to": aID, "data": "dm"}))
	dm := wait(aChats, `"dm"`)
	assert.Equal(t, bID, dm.From)
	assert.Equal(t, aID, dm.To)
}
