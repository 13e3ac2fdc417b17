package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// leanConn is a minimal RFC 6455 client connection over TCP, for a load
// generator that should cost little beside the server it measures: the
// upgrade is one write and a read of the response head, with no net/http
// and no bufio; text messages go out masked in one write each; messages
// come in through one per-connection buffer (512 B to start with, grown
// only when a message needs it) without an allocation per message; pings
// are answered, and a close is answered and reported. It speaks ws:// only,
// negotiates no extension and no subprotocol, and sends no Origin (our
// server takes a request with one for a browser's).
//
// ReadMessage and SetReadDeadline are for one goroutine at a time;
// WriteText and Close may be called concurrently with them and with each
// other (a write holds a mutex: the reader answers pings while a publisher
// writes).
type leanConn struct {
	conn net.Conn

	// Read side, the reader's alone. buf[pos:end] was read and not parsed
	// yet; buf[msg:msg+msgLen] is the message being put together from its
	// fragments (inMsg), always before pos.
	buf         []byte
	pos, end    int
	msg, msgLen int
	inMsg       bool
	readErr     error // the first error ends the reading for good

	wmu       sync.Mutex
	wbuf      []byte // one frame, masked: grown to the largest written
	closeSent bool
}

const (
	initialReadBuf = 512      // most messages of the load test are under 200 B
	maxResponse    = 4 << 10  // the upgrade response's head; ours are ~150 B
	maxMessage     = 16 << 20 // a message larger than this ends the connection
	handshakeLimit = 10 * time.Second
)

// handshakeKey is every connection's Sec-WebSocket-Key: the key only shows
// that the server understood the upgrade (RFC 6455 section 4.1), and a
// fixed one spares computing each connection's accept value.
const handshakeKey = "dGhlIHNhbXBsZSBub25jZQ=="

// handshakeAccept is the Sec-WebSocket-Accept of handshakeKey (section
// 4.2.2: base64 of the SHA-1 of the key and the protocol's GUID).
var handshakeAccept = func() []byte {
	h := sha1.Sum([]byte(handshakeKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return []byte(base64.StdEncoding.EncodeToString(h[:]))
}()

var (
	errNotWS        = errors.New("the lean client speaks ws:// only (use -client gorilla for wss://)")
	errResponseHead = errors.New("upgrade: response head too long or malformed")
	errBadAccept    = errors.New("upgrade: Sec-WebSocket-Accept does not match the key")
	errNotUpgraded  = errors.New("upgrade: 101 without Upgrade: websocket and Connection: Upgrade")
)

// dialLean dials connection i to rawURL (ws://) from the source address
// dialer(i, rawURL) uses and upgrades it, within 10 s for the TCP connect
// and 10 s for the upgrade, or until ctx ends. A status other than 101
// gives a *dialRefusal with the status and Retry-After.
func dialLean(ctx context.Context, i int, rawURL string) (*leanConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("%s: %w", rawURL, errNotWS)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	// No TCP keepalive: four setsockopt calls per connect saved, and no
	// probes on connections the measurement keeps idle.
	nd := net.Dialer{Timeout: handshakeLimit, KeepAlive: -1}
	if srcs := sourcesFor(rawURL); len(srcs) > 0 {
		nd.LocalAddr = &net.TCPAddr{IP: srcs[i%len(srcs)]}
	}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &leanConn{conn: conn, buf: make([]byte, initialReadBuf)}
	// A context that ends cuts the upgrade short through the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = c.handshake(u.Host, u.RequestURI())
	if !stop() && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// handshake sends the upgrade request for host and uri in one write and
// reads the response head; what follows the head in the same read is the
// first of the frame stream, and stays in the read buffer.
func (c *leanConn) handshake(host, uri string) error {
	c.conn.SetDeadline(time.Now().Add(handshakeLimit))
	req := c.buf[:0] // the read buffer is free until the response comes
	req = append(req, "GET "...)
	req = append(req, uri...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+handshakeKey+
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	if _, err := c.conn.Write(req); err != nil {
		return fmt.Errorf("upgrade request: %w", err)
	}
	head, err := c.readHead()
	if err != nil {
		return fmt.Errorf("upgrade response: %w", err)
	}
	return checkResponse(head)
}

// readHead reads until the response head's blank line, growing the buffer
// up to maxResponse, and leaves pos after the head.
func (c *leanConn) readHead() ([]byte, error) {
	for {
		if i := bytes.Index(c.buf[:c.end], []byte("\r\n\r\n")); i >= 0 {
			c.pos = i + 4
			return c.buf[:i+4], nil
		}
		if c.end == len(c.buf) {
			if len(c.buf) >= maxResponse {
				return nil, errResponseHead
			}
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		n, err := c.conn.Read(c.buf[c.end:])
		c.end += n
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

var (
	hdrAccept     = []byte("Sec-WebSocket-Accept")
	hdrRetryAfter = []byte("Retry-After")
	hdrUpgrade    = []byte("Upgrade")
	hdrConnection = []byte("Connection")
)

// checkResponse accepts a head that switches protocols as RFC 6455 section
// 4.1 requires: status 101, Upgrade: websocket, Connection: Upgrade and the
// accept value of the key (header names in any case). Another status gives
// a *dialRefusal.
func checkResponse(head []byte) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	proto, status, _ := bytes.Cut(line, []byte(" "))
	if !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(status) < 3 {
		return errResponseHead
	}
	code := 0
	for _, d := range status[:3] {
		if d < '0' || d > '9' {
			return errResponseHead
		}
		code = code*10 + int(d-'0')
	}
	var accept, retryAfter []byte
	upgrade, connection := false, false
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // the blank line at the end
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, hdrAccept):
			accept = value
		case bytes.EqualFold(name, hdrRetryAfter):
			retryAfter = value
		case bytes.EqualFold(name, hdrUpgrade):
			upgrade = bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, hdrConnection):
			connection = hasToken(value, []byte("upgrade"))
		}
	}
	switch {
	case code != 101:
		return &dialRefusal{Status: code, RetryAfter: string(retryAfter)}
	case !upgrade || !connection:
		return errNotUpgraded
	case !bytes.Equal(accept, handshakeAccept):
		return errBadAccept
	}
	return nil
}

// hasToken reports whether the comma-separated list v holds tok, in any
// case.
func hasToken(v, tok []byte) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// SetReadDeadline sets the socket's read deadline.
func (c *leanConn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// Close closes the socket, without a close frame.
func (c *leanConn) Close() error { return c.conn.Close() }
