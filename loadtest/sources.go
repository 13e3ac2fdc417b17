package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// A load generator runs out of ephemeral ports at ~28,000 connections per
// source address and destination, so connections are spread over several
// source addresses: over 127.0.0.1-127.0.0.250 when the target is on
// loopback (every 127/8 address is this host's), over -source-ips when given,
// and otherwise not at all (the kernel picks the source, as for any client:
// binding 127.0.0.x to reach another host fails with EINVAL).

// sourceIPs is -source-ips, parsed: when set, every connection's source
// address is one of these, whatever the target.
var sourceIPs []net.IP

// loopbackSources is 127.0.0.1-127.0.0.250.
var loopbackSources = func() []net.IP {
	ips := make([]net.IP, 250)
	for i := range ips {
		ips[i] = net.IPv4(127, 0, 0, byte(1+i))
	}
	return ips
}()

// sourcesFor returns the source addresses connections to rawURL are spread
// over: -source-ips when given, 127.0.0.1-250 for an IPv4 loopback target
// (an address in 127/8, or "localhost"), none otherwise.
func sourcesFor(rawURL string) []net.IP {
	if len(sourceIPs) > 0 {
		return sourceIPs
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return loopbackSources // the dialer keeps to localhost's IPv4 address
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		return loopbackSources
	}
	return nil
}

// dialer returns the dialer of connection i to rawURL: its source address is
// the i-th of sourcesFor(rawURL), round robin, or the kernel's choice.
func dialer(i int, rawURL string) *websocket.Dialer {
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if srcs := sourcesFor(rawURL); len(srcs) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: srcs[i%len(srcs)]}
	}
	return &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  512,
	}
}

// parseSourceIPs parses -source-ips: comma-separated addresses of this host,
// each an address or an IPv4 range first-last (10.0.0.1-10.0.0.40). An
// address that is not this host's is refused here rather than by every
// dial ("cannot assign requested address").
func parseSourceIPs(s string) ([]net.IP, error) {
	var out []net.IP
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		first, last, isRange := strings.Cut(item, "-")
		a := net.ParseIP(first)
		if a == nil {
			return nil, fmt.Errorf("-source-ips: %q is not an address", first)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(last)
		if a.To4() == nil || b == nil || b.To4() == nil {
			return nil, fmt.Errorf("-source-ips: %q: ranges are of IPv4 addresses", item)
		}
		lo, hi := binary.BigEndian.Uint32(a.To4()), binary.BigEndian.Uint32(b.To4())
		if hi < lo || hi-lo >= 1<<16 {
			return nil, fmt.Errorf("-source-ips: %q: a range runs upwards and holds at most 65,536 addresses", item)
		}
		for v := lo; ; v++ {
			out = append(out, net.IP(binary.BigEndian.AppendUint32(nil, v)))
			if v == hi {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	local, err := localAddrs()
	if err != nil {
		return nil, err
	}
	for _, ip := range out {
		if !(ip.To4() != nil && ip.IsLoopback()) && !local[ip.String()] {
			return nil, fmt.Errorf("-source-ips: %s is not an address of this host", ip)
		}
	}
	return out, nil
}

// localAddrs returns the addresses of this host's interfaces.
func localAddrs() (map[string]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			m[n.IP.String()] = true
		}
	}
	return m, nil
}
