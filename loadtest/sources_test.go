package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

func TestSourcesFor(t *testing.T) {
	defer func(old []net.IP) { sourceIPs = old }(sourceIPs)
	sourceIPs = nil
	for url, spread := range map[string]bool{
		"ws://127.0.0.1:8080/ws":   true,
		"ws://127.9.9.9/ws":        true,
		"ws://localhost:80/ws":     true,
		"ws://192.0.2.1/ws":        false, // another host: 127.0.0.x cannot reach it
		"wss://example.com/ws":     false,
		"ws://[::1]:8080/ws":       false, // IPv6 loopback has one address
		"ws://[2001:db8::1]:80/ws": false,
	} {
		if got := len(sourcesFor(url)) > 0; got != spread {
			t.Errorf("%s: spread %v, want %v", url, got, spread)
		}
	}
	sourceIPs = []net.IP{net.IPv4(127, 0, 0, 7)}
	if s := sourcesFor("ws://192.0.2.1/ws"); len(s) != 1 || !s[0].Equal(sourceIPs[0]) {
		t.Errorf("-source-ips not used for another host: %v", s)
	}
}

func TestParseSourceIPs(t *testing.T) {
	ips, err := parseSourceIPs("127.0.0.1, 127.0.1.250-127.0.2.3")
	if err != nil || len(ips) != 1+10 || ips[1].String() != "127.0.1.250" || ips[10].String() != "127.0.2.3" {
		t.Fatalf("%v %v", ips, err)
	}
	for _, bad := range []string{"nope", "127.0.0.9-127.0.0.1", "192.0.2.123", "::1-::2"} {
		if _, err := parseSourceIPs(bad); err == nil || !strings.Contains(err.Error(), "-source-ips") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A server on this host's non-loopback address is dialed from the kernel's
// source address; before, every dial bound 127.0.0.x, and another host's
// address failed with "connect: invalid argument".
func TestDialNonLoopback(t *testing.T) {
	local, err := localAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	for a := range local {
		if ip := net.ParseIP(a); ip.To4() != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			addr = a
		}
	}
	if addr == "" {
		t.Skip("no non-loopback IPv4 address")
	}
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skip(err)
	}
	up := websocket.Upgrader{}
	from := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from <- r.RemoteAddr
		if c, err := up.Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	url := "ws://" + ln.Addr().String() + "/ws"
	c, _, err := dialer(3, url).DialContext(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// Here 127.0.0.x would have reached this host's own address too: what
	// shows the fix is that the kernel picked the source.
	if host, _, _ := net.SplitHostPort(<-from); net.ParseIP(host).IsLoopback() {
		t.Errorf("dialed %s from %s: a loopback source for a non-loopback target", url, host)
	}
}
