package realtime

// Connections that cannot be polled (TLS, non-Linux) have one reader
// goroutine; output is written by a goroutine started when frames are
// queued, which ends when the queue is empty, so a slow peer pins no worker.

const goReadBufferSize = 4 << 10

func (c *conn) readLoop() {
	defer c.h.eng.fallback.Done()
	buf := make([]byte, goReadBufferSize)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.onBytes(buf[:n])
			if c.closeDone() {
				c.teardown(nil)
				return
			}
		}
		if err != nil {
			c.teardown(err)
			return
		}
	}
}

func (c *conn) flushBlocking() {
	iov := make([][]byte, 0, 16)
	_, err := c.flush(iov)
	switch {
	case err != nil:
		c.teardown(err)
	case c.closeDone():
		c.teardown(nil)
	}
}
