// Package wire frames the session protocol between a client and an exporter:
// each stream is a sequence of typed, length-prefixed frames (see
// proto/jumpmesh/v1/session.proto), and errors cross it as a Code and a
// message.
//
// It knows nothing of transports: a Stream is any bidirectional byte stream
// with half-close, a Unix socket connection or a QUIC stream alike.
package wire
