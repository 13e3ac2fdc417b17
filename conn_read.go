package realtime

import (
	"errors"
	"time"

	"github.com/realtimehub/realtime/internal/wsframe"
)

// The read side of a connection: bytes from the socket go through the
// incremental frame reader; messages go to the protocol, control frames are
// answered here.

// onBytes feeds bytes read from the socket to the frame reader.
func (c *conn) onBytes(p []byte) {
	c.lastRead.Store(time.Now().UnixNano())
	c.h.stats.bytesIn.Add(uint64(len(p)))
	if c.readStopped {
		return // closing after an error: what follows is not read
	}
	err := c.rd.Feed(p, c.onFrame)
	if err == nil || err == errStopReading {
		if err != nil {
			c.stopReading()
		}
		return
	}
	c.stopReading()
	var ce *wsframe.CloseError
	if errors.As(err, &ce) {
		c.h.stats.protocolErrors.Add(1)
		c.fail(ce.Code, ce.Reason)
		return
	}
	c.fail(wsframe.CloseInternalError, "internal error")
}

func (c *conn) stopReading() {
	c.readStopped = true
	c.rd = wsframe.Reader{} // release buffers
}

var pingFrame = wsframe.AppendFrame(nil, wsframe.OpPing, nil)

// onFrame handles one message or control frame from the peer.
func (c *conn) onFrame(op byte, payload []byte) error {
	if c.readStopped {
		return errStopReading // closing: what follows is not read
	}
	switch op {
	case wsframe.OpText:
		c.h.stats.messagesIn.Add(1)
		c.h.handleMessage(c, payload)
		c.flushBacklog()
	case wsframe.OpBinary:
		return &wsframe.CloseError{Code: wsframe.CloseUnsupportedData, Reason: "binary messages are not supported"}
	case wsframe.OpPing:
		// Pings count against the rate limit like messages; a refused one
		// gets no pong. The pong replaces one still queued (enqueue).
		if c.h.charge(c) {
			c.enqueue(wsframe.AppendFrame(nil, wsframe.OpPong, payload))
		}
	case wsframe.OpPong:
		c.h.charge(c) // lastRead is already updated
	case wsframe.OpClose:
		code, _, err := wsframe.ParseClosePayload(payload)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.peerClosed = true
		if !c.closeQueued {
			c.closeKind = closePeer
		}
		c.mu.Unlock()
		c.closeWith(code, "", c.h.cfg.CloseTimeout) // echo the code (RFC 6455 §5.5.1); no-op if ours is queued
		return errStopReading
	}
	return nil
}
