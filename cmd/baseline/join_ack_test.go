package main

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Regression (a review of 459a0c3): readPump sent the join acknowledgement on c.send
// with no lock, but c.close() (run by the writer on a write error, or by
// `go c.close()` when c.send is full) closes c.send. A join read after the
// close (the reader keeps going through what it already buffered) sends on a
// closed channel: the baseline process panics. Clients that send joins
// faster than they read (a storm, a slow loader) trigger it. Bounded: 8
// clients, at most 5 s.
func TestJoinAckAfterCloseDoesNotPanic(t *testing.T) {
	hub := New(slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(hub)
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	join := []byte(`{"type":"join","room":"r"}`)
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				c, _, err := websocket.DefaultDialer.Dial(url, nil)
				if err != nil {
					return
				}
				// Never read: the acknowledgements fill c.send (256), then the
				// hub closes the client while its reader still has joins.
				for i := 0; i < 200_000 && time.Now().Before(deadline); i++ {
					c.SetWriteDeadline(time.Now().Add(time.Second))
					if c.WriteMessage(websocket.TextMessage, join) != nil {
						break
					}
				}
				c.Close()
			}
		})
	}
	wg.Wait()
}
