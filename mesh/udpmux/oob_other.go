//go:build !linux

package udpmux

import "net"

// newOOB has no fast path outside Linux: the plain wrapper serves.
func newOOB(*net.UDPConn, Handler) Conn { return nil }
