package shard

import "errors"

// Errors returned by Registry methods.
var (
	// ErrNotRegistered: the connection ID is not (or no longer) registered.
	ErrNotRegistered = errors.New("shard: connection not registered")
	// ErrDuplicateID: another connection is registered under the same ID.
	ErrDuplicateID = errors.New("shard: connection ID already registered")
	// ErrTooManyRooms: the connection is in as many rooms as the limit allows.
	ErrTooManyRooms = errors.New("shard: too many rooms")
)
