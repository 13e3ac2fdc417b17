package realtime

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }

func newBufReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func readHTTPResponse(br *bufio.Reader) (*http.Response, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
