package relaywire

import (
	"bufio"
	"bytes"
	"errors"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

// TestPackets: each packet type reads back what was written, and a short
// packet is an error, not a panic.
func TestPackets(t *testing.T) {
	var hdr [DataHeaderSize]byte
	PutDataHeader(hdr[:], 0x0102030405060708)
	ch, err := DataChannel(append(hdr[:], "payload"...))
	require.NoError(t, err)
	require.Equal(t, uint64(0x0102030405060708), ch)

	nonce := [NonceSize]byte{1, 2, 3}
	probe := AppendProbe(nil, nonce)
	require.Len(t, probe, ProbeSize)
	got, err := ParseProbe(probe)
	require.NoError(t, err)
	require.Equal(t, nonce, got)

	for _, seen := range []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:4000"), netip.MustParseAddrPort("[2001:db8::1]:443")} {
		reply := AppendProbeReply(nil, nonce, seen)
		require.LessOrEqual(t, len(reply), ProbeSize, "no amplification")
		n, addr, err := ParseProbeReply(reply)
		require.NoError(t, err)
		require.Equal(t, nonce, n)
		require.Equal(t, seen, addr)
	}

	ch, err = ParseUnknownChannel(AppendUnknownChannel(nil, 42))
	require.NoError(t, err)
	require.Equal(t, uint64(42), ch)

	for _, short := range [][]byte{{TypeData, 1}, {TypeProbe}, {TypeProbeReply, 1}, {TypeUnknownChannel}} {
		_, err1 := DataChannel(short)
		_, err2 := ParseProbe(short)
		_, _, err3 := ParseProbeReply(short)
		_, err4 := ParseUnknownChannel(short)
		require.ErrorIs(t, errors.Join(err1, err2, err3, err4), ErrShort)
	}

	a, ok := AddrPortOf(EndpointOf(netip.MustParseAddrPort("192.0.2.1:53")))
	require.True(t, ok)
	require.Equal(t, netip.MustParseAddrPort("192.0.2.1:53"), a)
	_, ok = AddrPortOf(&relayv1.Endpoint{Ip: []byte{1, 2, 3}, Port: 1})
	require.False(t, ok)
	_, ok = AddrPortOf(&relayv1.Endpoint{Ip: []byte{1, 2, 3, 4}, Port: 70000})
	require.False(t, ok)
}

// TestStream: control frames go first and arrive in order; data frames
// beyond the queue are dropped, not blocked on.
func TestStream(t *testing.T) {
	a, b := net.Pipe()
	sa, sb := NewStream(a), NewStream(b)
	defer sa.Close()
	defer sb.Close()
	require.NoError(t, sa.SendControl(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Leave{Leave: &relayv1.Leave{Ref: 1}}}))
	require.True(t, sa.SendData([]byte("packet")))
	require.NoError(t, sa.SendPing())
	var m relayv1.PeerMessage
	require.NoError(t, sb.ReadControl(&m))
	require.Equal(t, uint32(1), m.GetLeave().GetRef())
	k, _, err := sb.Read()
	require.NoError(t, err)
	require.Equal(t, FramePing, k, "control frames go before data")
	k, p, err := sb.Read()
	require.NoError(t, err)
	require.Equal(t, FrameData, k)
	require.Equal(t, "packet", string(p))
	sa.Close()
	_, _, err = sb.Read()
	require.Error(t, err)
	require.Error(t, sa.SendControl(&relayv1.PeerMessage{}), "a closed stream takes nothing")
}

// FuzzStreamRead feeds arbitrary bytes to the frame reader: errors, never
// panics, never a frame over the limit.
func FuzzStreamRead(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, FrameControl, []byte{0x0a, 0x00}), FrameData, []byte("x")))
	f.Add([]byte{byte(FrameData), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{9, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Stream{r: bufio.NewReader(bytes.NewReader(data))}
		for {
			_, p, err := s.Read()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(p) > MaxFrameSize {
				t.Fatalf("frame of %d bytes", len(p))
			}
			var m relayv1.RelayMessage
			_ = proto.Unmarshal(p, &m) // must not panic either
		}
	})
}
