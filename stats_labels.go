package realtime

import (
	"strconv"
	"strings"
	"sync/atomic"
)

// Counters by label, for metrics: why connections closed, which error codes
// clients were sent, which commands came in, why upgrades were refused. Each
// label set is fixed and small, so every counter is an atomic in an array.

// closeKind is why a connection ended: who closed it, with which code.
type closeKind uint8

const (
	closeGone         closeKind = iota // no close frame either way: the network or the peer dropped
	closePeer                          // the client sent its close frame first
	closeNormal                        // 1000: Close() from server code
	closeShutdown                      // 1001: the handler shut down (drain)
	closePingTimeout                   // 1001: silent past PongTimeout
	closeProtocol                      // 1002
	closeUnsupported                   // 1003: a binary frame
	closeInvalid                       // 1007: invalid UTF-8
	closeRateLimit                     // 1008: past the rate limit
	closeSlowConsumer                  // 1008: send queue full
	closePolicy                        // 1008: another policy
	closeTooBig                        // 1009
	closeInternal                      // 1011
	closeTokenExpired                  // 3000
	closeDisconnected                  // 3003
	closeOther                         // any other code
	numCloseKinds
)

// CloseStat counts connections that ended one way. It is a plain value.
type CloseStat struct {
	// Code is the close code the server sent ("" when the client closed
	// first, or nobody did); Reason a fixed token: gone, client, normal,
	// shutdown, ping_timeout, protocol_error, unsupported_data,
	// invalid_payload, rate_limit, slow_consumer, policy, too_big,
	// internal_error, token_expired, disconnected, other.
	Code, Reason string
	Count        uint64
}

var closeKinds = [numCloseKinds]struct{ code, reason string }{
	closeGone: {"", "gone"}, closePeer: {"", "client"}, closeNormal: {"1000", "normal"},
	closeShutdown: {"1001", "shutdown"}, closePingTimeout: {"1001", "ping_timeout"},
	closeProtocol: {"1002", "protocol_error"}, closeUnsupported: {"1003", "unsupported_data"},
	closeInvalid: {"1007", "invalid_payload"}, closeRateLimit: {"1008", "rate_limit"},
	closeSlowConsumer: {"1008", "slow_consumer"}, closePolicy: {"1008", "policy"},
	closeTooBig: {"1009", "too_big"}, closeInternal: {"1011", "internal_error"},
	closeTokenExpired: {"3000", "token_expired"}, closeDisconnected: {"3003", "disconnected"},
	closeOther: {"other", "other"},
}

// classifyClose returns the kind of a close frame the server queues.
func classifyClose(code uint16, reason string) closeKind {
	switch code {
	case 1000:
		return closeNormal
	case 1001:
		if reason == "ping timeout" {
			return closePingTimeout
		}
		return closeShutdown
	case 1002:
		return closeProtocol
	case 1003:
		return closeUnsupported
	case 1007:
		return closeInvalid
	case 1008:
		switch {
		case strings.HasPrefix(reason, "rate limit"):
			return closeRateLimit
		case strings.HasPrefix(reason, "slow consumer"):
			return closeSlowConsumer
		}
		return closePolicy
	case 1009:
		return closeTooBig
	case 1011:
		return closeInternal
	case CloseUnauthorized:
		return closeTokenExpired
	case CloseForbidden:
		return closeDisconnected
	}
	return closeOther
}

// errorCodes are the codes sendError counts, in a fixed order.
var errorCodes = [...]string{ErrCodeBadJSON, ErrCodeUnknownType, ErrCodeForbidden, ErrCodeNotInRoom,
	ErrCodeRateLimited, ErrCodeTooManyRooms, ErrCodeBadRoom, ErrCodeBadData, ErrCodeNotFound,
	ErrCodePublishFailed, ErrCodeUnavailable, ErrCodeUnauthorized}

// errorIndex returns code's place in errorCodes, or len(errorCodes).
func errorIndex(code string) int {
	for i, c := range errorCodes {
		if c == code {
			return i
		}
	}
	return len(errorCodes)
}

// commandKind is what a client message asked for.
type commandKind uint8

const (
	cmdPublish commandKind = iota // a message to a room
	cmdDirect                     // a message to a connection
	cmdJoin
	cmdLeave
	cmdPresence
	cmdMembers
	cmdRefresh
	cmdPing
	cmdInvalid // not JSON, no type, a reserved or malformed type
	numCommandKinds
)

var commandNames = [numCommandKinds]string{"publish", "direct", "join", "leave", "presence", "members", "refresh", "ping", "invalid"}

// rejectStatuses are the HTTP statuses an upgrade is refused with.
var rejectStatuses = [...]int{400, 401, 403, 431, 503}

// labelCounters are the handler's counters by label.
type labelCounters struct {
	closes   [numCloseKinds]atomic.Uint64
	errors   [len(errorCodes) + 1]atomic.Uint64
	commands [numCommandKinds]atomic.Uint64
	rejects  [len(rejectStatuses) + 1]atomic.Uint64
}

// reject counts an upgrade refused with status.
func (h *Handler) reject(status int) {
	h.stats.rejected.Add(1)
	i := 0
	for i < len(rejectStatuses) && rejectStatuses[i] != status {
		i++
	}
	h.stats.labels.rejects[i].Add(1)
}

// fill fills st's labelled counters.
func (l *labelCounters) fill(st *HandlerStats) {
	for k := range l.closes {
		if n := l.closes[k].Load(); n > 0 {
			st.Closes = append(st.Closes, CloseStat{Code: closeKinds[k].code, Reason: closeKinds[k].reason, Count: n})
		}
	}
	st.ErrorsByCode = map[string]uint64{}
	for i := range l.errors {
		if n := l.errors[i].Load(); n > 0 {
			code := "other"
			if i < len(errorCodes) {
				code = errorCodes[i]
			}
			st.ErrorsByCode[code] = n
		}
	}
	st.Commands = map[string]uint64{}
	for k := range l.commands {
		if n := l.commands[k].Load(); n > 0 {
			st.Commands[commandNames[k]] = n
		}
	}
	st.RejectedByStatus = map[string]uint64{}
	for i := range l.rejects {
		if n := l.rejects[i].Load(); n > 0 {
			status := "other"
			if i < len(rejectStatuses) {
				status = strconv.Itoa(rejectStatuses[i])
			}
			st.RejectedByStatus[status] = n
		}
	}
}
