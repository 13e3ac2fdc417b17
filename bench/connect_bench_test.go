package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/realtimehub/realtime"
)

// connectHeld is how many connections BenchmarkRawConnect keeps open before
// it closes them (untimed): a reconnect storm's server holds what it
// accepted, and the process has 20,000 descriptors.
const connectHeld = 1_000

// BenchmarkRawConnect measures one connect as a reconnect storm makes it, on
// a real Handler with the default HandlerConfig behind the raw door (Serve
// on a loopback listener): a TCP connect, the upgrade, the greeting, a join
// of room-<i%100> and its acknowledgement. The client is a few lines over
// net.Conn (a fixed handshake, one masked frame, reads into one buffer), so
// that allocs/op and B/op are mostly the server's (the client's are those
// of its net.Dial, about a tenth of B/op): the garbage each
// handshake leaves is what makes a storm's collections, and with GOGC 25
// (the server binary's) they were a third of its CPU per connect.
// B/op includes the connection state that stays (about 700 B; see
// docs/figures.md). Connections are closed every 1,000, untimed: the timer
// restarts once the server has torn them all down.
func BenchmarkRawConnect(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	hub := realtime.NewHub(logger)
	h := realtime.NewHandler(hub, logger, realtime.HandlerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { hub.Run(ctx); close(ran) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() { h.Serve(ln); close(served) }()
	base := runtime.NumGoroutine()
	addr := ln.Addr().String()
	req := []byte("GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	var joins [100][]byte
	for i := range joins {
		joins[i] = maskedText(fmt.Sprintf(`{"type":"join","room":"room-%d"}`, i))
	}
	held := make([]net.Conn, 0, connectHeld)
	closeHeld := func() {
		for _, c := range held {
			c.Close()
		}
		held = held[:0]
		deadline := time.Now().Add(30 * time.Second)
		for st := h.Stats(); st.Closed < st.Accepted; st = h.Stats() { // torn down, leave events sent
			if time.Now().After(deadline) {
				b.Fatalf("connections not torn down after 30 s: %d accepted, %d closed", st.Accepted, st.Closed)
			}
			time.Sleep(time.Millisecond)
		}
	}
	buf := make([]byte, 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c, err := connectAndJoin(addr, req, joins[i%len(joins)], buf)
		if err != nil {
			b.Fatal(err)
		}
		held = append(held, c)
		if i++; len(held) == connectHeld {
			b.StopTimer()
			closeHeld()
			b.StartTimer()
		}
	}
	b.StopTimer()
	closeHeld()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := h.Shutdown(sctx); err != nil {
		b.Errorf("Shutdown: %v", err)
	}
	cancel()
	<-served
	<-ran
	waitGoroutines(b, base-2) // Serve's and Run's
}

var (
	upgraded = []byte("HTTP/1.1 101 ")
	ackType  = []byte(`"type":"join"`)
)

// connectAndJoin dials addr, sends the handshake req, waits for the 101,
// sends join and waits for the acknowledgement (the first message of type
// join), reading into buf.
func connectAndJoin(addr string, req, join, buf []byte) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := readUntil(c, req, buf, upgraded); err != nil {
		c.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	if err := readUntil(c, join, buf, ackType); err != nil {
		c.Close()
		return nil, fmt.Errorf("join: %w", err)
	}
	return c, nil
}

// readUntil writes out to c, then reads into buf until what was read
// contains want.
func readUntil(c net.Conn, out, buf, want []byte) error {
	if _, err := c.Write(out); err != nil {
		return err
	}
	n := 0
	for !bytes.Contains(buf[:n], want) {
		if n == len(buf) {
			return fmt.Errorf("%q not in the first %d bytes", want, n)
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}

// maskedText is a client's text frame of payload (under 126 bytes), masked
// with a fixed key.
func maskedText(payload string) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x81, 0x80 | byte(len(payload))}, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}
