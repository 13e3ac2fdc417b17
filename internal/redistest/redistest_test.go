package redistest

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// A redis-server whose port is taken exits at once; start reports it
// without waiting for PING's time-out, so that Start can try another port.
func TestStartNoticesTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	s := &Server{Addr: ln.Addr().String(), port: port, dir: t.TempDir(), t: t,
		args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}}
	begin := time.Now()
	err = s.start()
	s.Kill()
	if err == nil {
		t.Fatal("start succeeded on a taken port")
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Fatalf("start took %v to notice", d)
	}
	// Start itself moves on to another port.
	if srv := Start(t); !ping(srv.Addr) {
		t.Fatal("Start's server does not answer")
	}
}
