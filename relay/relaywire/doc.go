// Package relaywire is the wire format between mesh peers and a relay: the
// signalling messages (relay.proto), how they travel on a link (a QUIC
// stream or TLS over TCP frames), and the UDP packets that share the peer's
// socket with QUIC: relayed data, address probes and their answers.
//
// Every UDP packet defined here starts with a byte below 0x40, which QUIC
// packets never do (RFC 9000 section 17.2, the fixed bit), so one socket
// carries both and a first byte tells them apart.
package relaywire
