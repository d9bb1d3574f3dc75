// Package meshwire is the wire format between the two peers of a mesh
// session, beside the session protocol itself: the punch packets that open
// NATs and watch a direct path (first byte below 0x40, so they share the
// QUIC socket, see package relaywire), and the control messages a client
// sends its exporter on each connection's control stream (mesh.proto).
package meshwire
