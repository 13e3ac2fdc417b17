package wsframe

import "fmt"

// CloseError is a reason to close the connection, with the status code to
// send in the close frame.
//
// It is an immutable value: the package's sentinels may be shared.
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("wsframe: close %d: %s", e.Code, e.Reason)
}

// Protocol violations found by Reader, grouped by the code they close with.
var (
	ErrUnmasked          = &CloseError{CloseProtocolError, "client frame not masked"}
	ErrReservedBits      = &CloseError{CloseProtocolError, "reserved bits set"}
	ErrReservedOpcode    = &CloseError{CloseProtocolError, "reserved opcode"}
	ErrControlFragmented = &CloseError{CloseProtocolError, "fragmented control frame"}
	ErrControlTooLong    = &CloseError{CloseProtocolError, "control frame longer than 125 bytes"}
	ErrUnexpectedCont    = &CloseError{CloseProtocolError, "continuation frame without a message"}
	ErrExpectedCont      = &CloseError{CloseProtocolError, "new message before the last one ended"}
	ErrLengthOverflow    = &CloseError{CloseProtocolError, "payload length has its top bit set"}
	ErrBadClosePayload   = &CloseError{CloseProtocolError, "close frame with a 1-byte payload"}
	ErrBadCloseCode      = &CloseError{CloseProtocolError, "invalid close code"}
	ErrInvalidUTF8       = &CloseError{CloseInvalidPayload, "text is not valid UTF-8"}
	ErrTooBig            = &CloseError{CloseTooBig, "message too big"}
)
