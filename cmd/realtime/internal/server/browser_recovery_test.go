package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/internal/redistest"
)

// runAt runs a server with opts (Addr set) until the returned stop is
// called, which waits for its graceful shutdown.
func runAt(t *testing.T, opts Options) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan error, 1), make(chan struct{})
	go func() { done <- Run(ctx, opts, slog.New(slog.DiscardHandler), func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("server: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			assert.NoError(t, <-done)
		}
	}
	t.Cleanup(stop)
	return stop
}

// The demo page's client across a restart of its server: messages sent
// (through another pod) while the page was disconnected reach it after it
// reconnects, once each and in order, because it rejoins with the position
// of the last message it got; the page is not told of anything lost.
func TestBrowserRecoversAcrossServerRestart(t *testing.T) {
	redis := redistest.Start(t)
	pod := func(id, addr string) Options {
		return Options{Addr: addr, InsecureDevAuth: true, RedisAddrs: []string{redis.Addr}, Handler: realtime.HandlerConfig{PodID: id, DrainWindow: time.Second}}
	}
	addrA := freeAddr(t)
	stopA := runAt(t, pod("a", addrA))
	addrB := freeAddr(t)
	runAt(t, pod("b", addrB))

	page := browser(t)
	openDemo(t, page, addrA, "alice")
	bob, _, err := websocket.DefaultDialer.Dial("ws://"+addrB+"/ws?user=bob", nil)
	require.NoError(t, err)
	defer bob.Close()
	require.NoError(t, bob.WriteJSON(map[string]any{"type": "join", "room": "lobby"}))
	say := func(text string) {
		require.NoError(t, bob.WriteJSON(map[string]any{"type": "chat", "room": "lobby", "data": text}))
	}
	poll(t, page, `document.getElementById("log").textContent.includes("bob joined lobby")`)
	say("before the restart")
	poll(t, page, `document.getElementById("log").textContent.includes("before the restart")`)

	stopA() // the page gets 1001 and retries with backoff
	poll(t, page, `document.getElementById("state").dataset.state === "reconnecting"`)
	for _, text := range []string{"missed one", "missed two", "missed three"} {
		say(text)
	}
	time.Sleep(200 * time.Millisecond)
	runAt(t, pod("a", addrA)) // back on the same address
	poll(t, page, `document.getElementById("log").textContent.includes("rejoined lobby, nothing missed")`)
	poll(t, page, `document.getElementById("log").textContent.includes("missed three")`)
	say("after the restart")
	poll(t, page, `document.getElementById("log").textContent.includes("after the restart")`)

	log, err := chromedp.Run(page, chromedp.Text(chromedp.ID("log")))
	require.NoError(t, err)
	for _, text := range []string{"before the restart", "missed one", "missed two", "missed three", "after the restart"} {
		assert.Equal(t, 1, strings.Count(log, text), "%q once in:\n%s", text, log)
	}
	assert.Less(t, strings.Index(log, "missed one"), strings.Index(log, "missed two"))
	assert.Less(t, strings.Index(log, "missed three"), strings.Index(log, "after the restart"))
	assert.NotContains(t, log, "could not recover")
}
