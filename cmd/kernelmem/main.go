// Command kernelmem measures what idle WebSocket connections cost the
// kernel, which a process's RSS does not show: it reads the slab and TCP
// buffer memory of this host (/proc/meminfo, /proc/net/sockstat), opens
// -conns connections to -url (each joins one of -rooms rooms and waits for
// the acknowledgement), waits 3 s, and reads them again. Both ends of a
// loopback connection live in this kernel, so the figures per socket are
// the deltas over twice the connections. Linux only; run it against a
// server on this host, nothing else busy.
//
//	go run ./cmd/realtime -addr 127.0.0.1:8080 &
//	go run ./cmd/kernelmem -url ws://127.0.0.1:8080/ws -conns 10000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "WebSocket URL of a server on this host")
	conns := flag.Int("conns", 10000, "connections to open (each end is a socket of this kernel)")
	rooms := flag.Int("rooms", 100, "rooms the connections join, round robin")
	hold := flag.Duration("hold", 0, "keep the connections open this long after measuring (to profile the server)")
	flag.Parse()
	slab0, tcp0 := meminfoKiB("Slab"), sockstatPages()
	d := websocket.Dialer{ReadBufferSize: 256, WriteBufferSize: 256, HandshakeTimeout: 10 * time.Second}
	var open []*websocket.Conn
	for i := range *conns {
		c, _, err := d.Dial(*url, nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kernelmem: connection %d: %v\n", i, err)
			break
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.ReadMessage() // the greeting
		c.WriteMessage(websocket.TextMessage, []byte(`{"type":"join","room":"r`+strconv.Itoa(i%*rooms)+`"}`))
		c.ReadMessage() // the acknowledgement
		open = append(open, c)
	}
	time.Sleep(3 * time.Second)
	slab1, tcp1 := meminfoKiB("Slab"), sockstatPages()
	sockets := float64(2 * len(open))
	page := float64(os.Getpagesize())
	fmt.Printf("connections %d (sockets in this kernel: %d)\n", len(open), 2*len(open))
	fmt.Printf("slab: +%d KiB, %.0f B per socket\n", slab1-slab0, float64(slab1-slab0)*1024/sockets)
	fmt.Printf("TCP buffers: +%d pages, %.0f B per socket\n", tcp1-tcp0, float64(tcp1-tcp0)*page/sockets)
	time.Sleep(*hold)
	for _, c := range open {
		c.Close()
	}
}

// meminfoKiB returns the /proc/meminfo field key, in KiB.
func meminfoKiB(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// sockstatPages returns the pages TCP sockets hold (the "mem" of TCP in
// /proc/net/sockstat).
func sockstatPages() int64 {
	b, _ := os.ReadFile("/proc/net/sockstat")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "TCP:" {
			for i := 1; i+1 < len(f); i += 2 {
				if f[i] == "mem" {
					n, _ := strconv.ParseInt(f[i+1], 10, 64)
					return n
				}
			}
		}
	}
	return 0
}
