package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// This file holds what connections send: the hello (join) frame and the
// published messages, in our protocol or, with -url, in the external
// server's templates.

// external describes a server the load test drives but did not start.
type external struct {
	url, hello, publish, publishURL, ack string
	headers                              http.Header // of each POST to publishURL
	pid                                  int
}

// publishClient POSTs to -publish-url.
var publishClient = &http.Client{Timeout: 10 * time.Second}

var ext *external

// helloFrame is what a connection sends first: a join to room.
func helloFrame(room string) []byte {
	if ext != nil {
		return []byte(strings.ReplaceAll(ext.hello, "{room}", room))
	}
	return fmt.Appendf(nil, `{"type":"join","room":%q}`, room)
}

// publish sends message i to room, carrying its send time.
func publish(pub wsClient, i int, room string) error {
	now := time.Now().UnixNano()
	if ext == nil {
		return pub.WriteText(fmt.Appendf(nil, `{"type":"chat","room":%q,"data":{"seq":%d,"t":%d}}`, room, i, now))
	}
	body := strings.NewReplacer("{room}", room, "{t}", fmt.Sprint(now)).Replace(ext.publish)
	if ext.publishURL == "" {
		return pub.WriteText([]byte(body))
	}
	req, err := http.NewRequest(http.MethodPost, ext.publishURL, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = ext.headers.Clone()
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := publishClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body) // the connection is reused
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("publish endpoint: %s", resp.Status)
	}
	return nil
}
