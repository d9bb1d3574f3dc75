package relaywire

import (
	"encoding/binary"
	"errors"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net/netip"
)

// Packet types: the first byte of a non-QUIC UDP packet.
const (
	// TypeData is [TypeData][channel, 8 bytes][end-to-end QUIC packet]. A
	// peer sends it with its own channel; the relay rewrites the channel
	// to the receiver's before forwarding it.
	TypeData byte = 0x01
	// TypeProbe is [TypeProbe][nonce, 12 bytes][padding]: what address does
	// the relay see? Padded to ProbeSize so the answer is never larger than
	// the question (no amplification).
	TypeProbe byte = 0x02
	// TypeProbeReply is [TypeProbeReply][nonce][IPv6 or v4-mapped, 16][port, 2].
	TypeProbeReply byte = 0x03
	// TypeUnknownChannel is [TypeUnknownChannel][channel, 8]: the relay
	// knows no such channel, because it restarted or the join ended; the
	// peer should join again.
	TypeUnknownChannel byte = 0x06
)

// DataHeaderSize is the bytes TypeData adds to each relayed packet.
const DataHeaderSize = 1 + 8

// NonceSize is a probe's nonce length.
const NonceSize = 12

// ProbeSize is the length of a probe: at least its answer's.
const ProbeSize = 32

const probeReplySize = 1 + NonceSize + 16 + 2

// ErrShort is returned for a packet too short for its type.
var ErrShort = errors.New("relay packet too short")

// PutDataHeader writes a data header for channel into b[:DataHeaderSize].
func PutDataHeader(b []byte, channel uint64) {
	b[0] = TypeData
	binary.BigEndian.PutUint64(b[1:DataHeaderSize], channel)
}

// DataChannel returns the channel of a TypeData packet.
func DataChannel(b []byte) (uint64, error) {
	if len(b) < DataHeaderSize || b[0] != TypeData {
		return 0, ErrShort
	}
	return binary.BigEndian.Uint64(b[1:DataHeaderSize]), nil
}

// AppendProbe appends a probe with nonce.
func AppendProbe(b []byte, nonce [NonceSize]byte) []byte {
	b = append(b, TypeProbe)
	b = append(b, nonce[:]...)
	return append(b, make([]byte, ProbeSize-1-NonceSize)...)
}

// ParseProbe returns a probe's nonce.
func ParseProbe(b []byte) ([NonceSize]byte, error) {
	var n [NonceSize]byte
	if len(b) < ProbeSize || b[0] != TypeProbe {
		return n, ErrShort
	}
	copy(n[:], b[1:])
	return n, nil
}

// AppendProbeReply appends the answer to a probe: the address it came from.
func AppendProbeReply(b []byte, nonce [NonceSize]byte, seen netip.AddrPort) []byte {
	b = append(b, TypeProbeReply)
	b = append(b, nonce[:]...)
	ip := seen.Addr().As16()
	b = append(b, ip[:]...)
	return binary.BigEndian.AppendUint16(b, seen.Port())
}

// ParseProbeReply returns a probe answer's nonce and address.
func ParseProbeReply(b []byte) ([NonceSize]byte, netip.AddrPort, error) {
	var n [NonceSize]byte
	if len(b) < probeReplySize || b[0] != TypeProbeReply {
		return n, netip.AddrPort{}, ErrShort
	}
	copy(n[:], b[1:])
	ip := netip.AddrFrom16([16]byte(b[1+NonceSize : 1+NonceSize+16])).Unmap()
	port := binary.BigEndian.Uint16(b[1+NonceSize+16:])
	return n, netip.AddrPortFrom(ip, port), nil
}

// AppendUnknownChannel appends the relay's answer to data on a channel it
// does not know.
func AppendUnknownChannel(b []byte, channel uint64) []byte {
	b = append(b, TypeUnknownChannel)
	return binary.BigEndian.AppendUint64(b, channel)
}

// ParseUnknownChannel returns the channel a TypeUnknownChannel names.
func ParseUnknownChannel(b []byte) (uint64, error) {
	if len(b) < 9 || b[0] != TypeUnknownChannel {
		return 0, ErrShort
	}
	return binary.BigEndian.Uint64(b[1:9]), nil
}

// EndpointOf converts an address for a message.
func EndpointOf(a netip.AddrPort) *relayv1.Endpoint {
	ip := a.Addr().Unmap()
	return &relayv1.Endpoint{Ip: ip.AsSlice(), Port: uint32(a.Port())}
}

// AddrPortOf converts an endpoint from a message; ok is false for a
// malformed one.
func AddrPortOf(e *relayv1.Endpoint) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(e.GetIp())
	if !ok || e.GetPort() == 0 || e.GetPort() > 0xffff {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(e.GetPort())), true
}

// ALPN is the TLS application protocol of relay links, on QUIC and on TCP.
const ALPN = "jumpmesh-relay/1"
