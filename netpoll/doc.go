// Package netpoll drives sockets the server owns with epoll and a bounded
// pool of workers. It knows nothing of WebSocket.
//
// An idle connection costs no goroutine and no net.Conn: after a handshake
// the caller duplicates the socket's descriptor (DupFD), closes the net.Conn,
// and registers the raw descriptor with a Poller. A TCP listener's
// connections can come as bare descriptors in the first place (Acceptor),
// never a net.Conn at all. The Poller wraps several
// instances of github.com/mailru/easygo's low-level netpoll.Epoll (one per
// core, so one dispatch goroutine is not a bottleneck) in one-shot mode: a
// descriptor reports readiness once, then stays silent until Arm re-arms it.
// Readiness callbacks only hand work to the Pool; reads and writes are
// non-blocking syscalls on the descriptor (Read, Writev), which return
// ErrWouldBlock instead of waiting.
//
// Descriptors that cannot be polled (TLS, non-Linux builds) are the caller's
// to drive with a goroutine; Supported reports whether this build can poll.
package netpoll
