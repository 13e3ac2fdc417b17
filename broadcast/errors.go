package broadcast

import "errors"

// Every sentinel error of the package; errors from Redis come wrapped once,
// with the channel or key they concern, as "broadcast: …: <cause>".
var (
	// ErrNotRunning: Ready was called before Run started (or after it ended).
	ErrNotRunning = errors.New("broadcast: not running")
	// ErrRunning: Run was called while another Run is active.
	ErrRunning = errors.New("broadcast: Run already running")
	// ErrNoCanary: Ready found that no canary has come back through Redis
	// since Run started.
	ErrNoCanary = errors.New("broadcast: no canary has come back through Redis yet")
	// ErrNoPod: a direct payload reached nobody: no pod of that name listens
	// (PublishDirect, PublishBatch).
	ErrNoPod = errors.New("broadcast: no such pod")
	// ErrNotDelivering: Ready found that the last canary came back too long
	// ago: the pub/sub link is up but not delivering, or down.
	ErrNotDelivering = errors.New("broadcast: pub/sub not delivering")
)
