//go:build !linux

package server

import (
	"errors"
	"syscall"
)

func reusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("SO_REUSEPORT is supported on Linux only")
}
