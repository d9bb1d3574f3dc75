package mesh_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
)

// loopback is the machine itself, as a host.
type loopback struct{}

var loopbackIP = netip.MustParseAddr("127.0.0.1")

func (loopback) ListenPacket(network, address string) (net.PacketConn, error) {
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	return net.ListenPacket("udp4", net.JoinHostPort(loopbackIP.String(), port))
}

func (loopback) Listen(network, address string) (net.Listener, error) {
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	return net.Listen("tcp4", net.JoinHostPort(loopbackIP.String(), port))
}

func (loopback) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func (loopback) Addr() netip.Addr { return loopbackIP }

// pair is two ends of a byte stream, with how to end them.
type pair struct {
	a, b  io.ReadWriter
	close func()
	// conns, for bare QUIC, are the connections under the stream.
	conns struct{ client, server *quic.Conn }
}

// bareQUIC is the baseline: one quic-go connection on loopback, with the
// same flow-control windows as the mesh, and a stream.
func bareQUIC(b *testing.B) pair {
	serverConf, clientConf := selfSigned(b)
	listen, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP.AsSlice()})
	require.NoError(b, err)
	dial, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP.AsSlice()})
	require.NoError(b, err)
	st, ct := &quic.Transport{Conn: listen}, &quic.Transport{Conn: dial}
	conf := &quic.Config{
		InitialStreamReceiveWindow: 2 << 20, MaxStreamReceiveWindow: 16 << 20,
		InitialConnectionReceiveWindow: 4 << 20, MaxConnectionReceiveWindow: 32 << 20,
	}
	ln, err := st.Listen(serverConf, conf)
	require.NoError(b, err)
	accepted := make(chan *quic.Stream, 1)
	var server *quic.Conn
	go func() {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		server = qc
		s, err := qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		accepted <- s
	}()
	qc, err := ct.Dial(b.Context(), listen.LocalAddr(), clientConf, conf)
	require.NoError(b, err)
	s, err := qc.OpenStream()
	require.NoError(b, err)
	_, err = s.Write([]byte{0}) // the server learns of a stream when data comes
	require.NoError(b, err)
	peer := <-accepted
	_, err = io.ReadFull(peer, make([]byte, 1))
	require.NoError(b, err)
	p := pair{a: s, b: peer}
	p.conns.client, p.conns.server = qc, server
	p.close = func() {
		qc.CloseWithError(0, "")
		ln.Close()
		st.Close()
		ct.Close()
		listen.Close()
		dial.Close()
	}
	return p
}

// tlsTCP is the other baseline: TLS 1.3 over TCP on loopback.
func tlsTCP(b *testing.B) pair {
	serverConf, clientConf := selfSigned(b)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(b, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, serverConf)
		if tc.Handshake() == nil {
			accepted <- tc
		}
	}()
	c, err := tls.Dial("tcp4", ln.Addr().String(), clientConf)
	require.NoError(b, err)
	peer := <-accepted
	return pair{a: c, b: peer, close: func() { c.Close(); peer.Close(); ln.Close() }}
}

func selfSigned(b *testing.B) (server, client *tls.Config) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	cert, err := identity.Certificate(key)
	require.NoError(b, err)
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"bench"}},
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"bench"}}
}

// meshLab is a relay, an exporter and a client session on loopback.
type meshLab struct {
	*lab
	es   *exporterSide
	conn *mesh.Conn
	sess *client.Session
}

// startMesh connects a client to the virtual board on loopback, on the
// path policy allows (and waits for it).
func startMesh(b *testing.B, policy mesh.PathPolicy, path mesh.Path) *meshLab {
	l := newLab(b)
	l.startRelay(loopback{}, relay.Limits{}, nil)
	es := l.startExporter(loopback{}, nil)
	tok := l.auth.session(b, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
	es.serve(b, tok)
	conn, sess := l.dial(loopback{}, tok, policy)
	waitPath(b, conn, path, 5*time.Second)
	return &meshLab{lab: l, es: es, conn: conn, sess: sess}
}

// connPair is a client's and an exporter's end of one session.
type connPair struct{ c, e *mesh.Conn }

// meshStreamsConn connects a session, direct, on loopback, that no
// exporter serves.
func meshStreamsConn(b *testing.B) connPair {
	l := newLab(b)
	l.startRelay(loopback{}, relay.Limits{}, nil)
	ln, err := mesh.Listen(mesh.ListenConfig{Key: l.exporterKey, Name: exporterName, Tokens: l.auth.ring,
		Relay: l.relayConfig(), Network: network(b, loopback{}, nil)})
	require.NoError(b, err)
	b.Cleanup(func() { ln.Close() })
	tok := l.auth.session(b, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
	econn, err := ln.Join(b.Context(), tok)
	require.NoError(b, err)
	conn, err := mesh.Dial(b.Context(), l.dialConfig(loopback{}, tok, mesh.Auto, nil))
	require.NoError(b, err)
	b.Cleanup(func() { conn.Close() })
	waitPath(b, conn, mesh.PathDirect, 5*time.Second)
	return connPair{conn, econn}
}

// meshStreams is a pair of mesh streams: one the client opened, the one
// the exporter accepted, on a session served by no exporter.
func meshStreams(b testing.TB, policy mesh.PathPolicy, path mesh.Path, forceTCP bool) pair {
	l := newLab(b)
	l.startRelay(loopback{}, relay.Limits{}, nil)
	ln, err := mesh.Listen(mesh.ListenConfig{Key: l.exporterKey, Name: exporterName, Tokens: l.auth.ring,
		Relay: l.relayConfig(), Network: network(b, loopback{}, nil)})
	require.NoError(b, err)
	b.Cleanup(func() { ln.Close() })
	tok := l.auth.session(b, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
	econn, err := ln.Join(b.Context(), tok)
	require.NoError(b, err)
	cfg := l.dialConfig(loopback{}, tok, policy, nil)
	if forceTCP {
		cfg.Relay.UDP, cfg.Relay.ProbeUDP = "", ""
	}
	conn, err := mesh.Dial(b.Context(), cfg)
	require.NoError(b, err)
	b.Cleanup(func() { conn.Close() })
	waitPath(b, conn, path, 5*time.Second)
	s, err := conn.OpenStream(b.Context())
	require.NoError(b, err)
	_, err = s.Write([]byte{0})
	require.NoError(b, err)
	peer, err := econn.AcceptStream(b.Context())
	require.NoError(b, err)
	_, err = io.ReadFull(peer, make([]byte, 1))
	require.NoError(b, err)
	return pair{a: s, b: peer, close: func() { s.Close(); peer.Close() }}
}

// transfer sends n bytes from p.a to p.b and waits for b's one-byte ack.
func transfer(b *testing.B, p pair, buf []byte, n int) time.Duration {
	begin := time.Now()
	done := make(chan error, 1)
	go func() {
		got := make([]byte, 64<<10)
		for left := n; left > 0; {
			k, err := p.b.Read(got[:min(len(got), left)])
			if err != nil {
				done <- err
				return
			}
			left -= k
		}
		_, err := p.b.Write([]byte{1})
		done <- err
	}()
	for left := n; left > 0; left -= len(buf) {
		_, err := p.a.Write(buf[:min(len(buf), left)])
		require.NoError(b, err)
	}
	_, err := io.ReadFull(p.a, make([]byte, 1))
	require.NoError(b, err)
	require.NoError(b, <-done)
	return time.Since(begin)
}

// kind is one thing a benchmark times.
type kind struct {
	name  string
	bytes int64 // per op, for throughput; 0 for round trips
	op    func(*testing.B)
}

// interleave runs b.N ops of each kind, in blocks of block ops, the kinds
// taking turns and each going first in turn: the machine's load drifts
// (other work shares its two cores), and this way every kind sees the same
// drift, so the ratios hold even when the absolute numbers move. It
// reports each kind's µs per op (or MiB/s), and the ratios of the pairs:
// "a/b" is a's time over b's, or a's throughput over b's.
func interleave(b *testing.B, block int, kinds []kind, pairs ...[2]string) {
	took := map[string]time.Duration{}
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; done, turn = done+block, turn+1 {
		n := min(block, b.N-done)
		for j := range kinds {
			k := kinds[(turn+j)%len(kinds)]
			begin := time.Now()
			for range n {
				k.op(b)
			}
			took[k.name] += time.Since(begin)
		}
	}
	b.StopTimer()
	value := map[string]float64{}
	for _, k := range kinds {
		if k.bytes > 0 {
			value[k.name] = float64(k.bytes) * float64(b.N) / (1 << 20) / took[k.name].Seconds()
			b.ReportMetric(value[k.name], k.name+"-MiB/s")
		} else {
			value[k.name] = float64(took[k.name].Nanoseconds()) / 1000 / float64(b.N)
			b.ReportMetric(value[k.name], k.name+"-µs/op")
		}
	}
	for _, p := range pairs {
		b.ReportMetric(value[p[0]]/value[p[1]], p[0]+"/"+p[1])
	}
}

// BenchmarkThroughput moves bytes one way, 8 MiB an op, on a bare quic-go
// stream and TLS over TCP on loopback (the baselines) and on mesh streams
// direct, relayed over UDP and relayed over TCP (the relay on loopback
// too), and reports MiB/s and the ratios.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 8 << 20
	transports := []struct {
		name string
		open func(*testing.B) pair
	}{
		{"tls-tcp", tlsTCP},
		{"quic", bareQUIC},
		{"direct", func(b *testing.B) pair { return meshStreams(b, mesh.Auto, mesh.PathDirect, false) }},
		{"relay-udp", func(b *testing.B) pair { return meshStreams(b, mesh.RelayOnly, mesh.PathRelayUDP, false) }},
		{"relay-tcp", func(b *testing.B) pair { return meshStreams(b, mesh.RelayOnly, mesh.PathRelayTCP, true) }},
	}
	buf := make([]byte, 256<<10)
	var kinds []kind
	for _, tr := range transports {
		p := tr.open(b)
		defer p.close()
		kinds = append(kinds, kind{tr.name, chunk, func(b *testing.B) { transfer(b, p, buf, chunk) }})
	}
	interleave(b, 1, kinds, [2]string{"direct", "quic"}, [2]string{"relay-udp", "quic"}, [2]string{"relay-tcp", "quic"},
		[2]string{"quic", "tls-tcp"})
}

// BenchmarkRoundTrip times round trips of 64 bytes:
//
//   - quic: a bare quic-go stream ping-pong on loopback (the baseline);
//   - quic-new: the same with a new stream per round trip, as every driver
//     call has: the like-for-like baseline of a call;
//   - mesh-new: a new mesh stream per round trip on the direct path;
//   - call-direct, call-relay: a driver call (a power call through the
//     session protocol, the exporter and the virtual board) on the direct
//     and the relayed path;
//
// and the ratios.
func BenchmarkRoundTrip(b *testing.B) {
	bare := bareQUIC(b)
	defer bare.close()
	echo := func(s io.ReadWriteCloser) {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}
	go echo(bare.b.(io.ReadWriteCloser))
	bareConns := bare.conns
	go acceptEach(func(ctx context.Context) (io.ReadWriteCloser, error) { return bareConns.server.AcceptStream(ctx) }, echo)
	streams := meshStreamsConn(b)
	go acceptEach(func(ctx context.Context) (io.ReadWriteCloser, error) { return streams.e.AcceptStream(ctx) }, echo)
	direct := startMesh(b, mesh.Auto, mesh.PathDirect)
	relayed := startMesh(b, mesh.RelayOnly, mesh.PathRelayUDP)
	d, err := direct.sess.Driver(b.Context(), "power")
	require.NoError(b, err)
	rd, err := relayed.sess.Driver(b.Context(), "power")
	require.NoError(b, err)

	ping := make([]byte, 64)
	roundTrip := func(b *testing.B, s io.ReadWriter) {
		_, err := s.Write(ping)
		require.NoError(b, err)
		_, err = io.ReadFull(s, ping)
		require.NoError(b, err)
	}
	interleave(b, 200, []kind{
		{"quic", 0, func(b *testing.B) { roundTrip(b, bare.a) }},
		{"quic-new", 0, func(b *testing.B) {
			s, err := bareConns.client.OpenStreamSync(b.Context())
			require.NoError(b, err)
			roundTrip(b, s)
			s.CancelRead(0)
			s.Close()
		}},
		{"mesh-new", 0, func(b *testing.B) {
			s, err := streams.c.OpenStream(b.Context())
			require.NoError(b, err)
			roundTrip(b, s)
			s.Close()
		}},
		{"call-direct", 0, func(b *testing.B) { require.NoError(b, powerCall(b.Context(), d)) }},
		{"call-relay", 0, func(b *testing.B) { require.NoError(b, powerCall(b.Context(), rd)) }},
	}, [2]string{"mesh-new", "quic-new"}, [2]string{"call-direct", "quic"}, [2]string{"call-direct", "quic-new"},
		[2]string{"call-relay", "quic"})
}

// acceptEach serves each accepted stream with serve, until accept fails.
func acceptEach(accept func(context.Context) (io.ReadWriteCloser, error), serve func(io.ReadWriteCloser)) {
	for {
		s, err := accept(context.Background())
		if err != nil {
			return
		}
		go func() {
			serve(s)
			s.Close()
		}()
	}
}

// BenchmarkSetup is the time from the lease being ready (token in hand,
// exporter joined) to the first driver call's answer on loopback, direct
// and relayed, and a bare quic-go handshake and ping-pong beside them.
func BenchmarkSetup(b *testing.B) {
	l := newLab(b)
	l.startRelay(loopback{}, relay.Limits{}, nil)
	es := l.startExporter(loopback{}, nil)
	var tBare, tDirect, tRelay time.Duration
	for range b.N {
		begin := time.Now()
		p := bareQUIC(b)
		tBare += time.Since(begin)
		p.close()
		for _, policy := range []mesh.PathPolicy{mesh.DirectOnly, mesh.RelayOnly} {
			tok := l.auth.session(b, "lease-1", l.clientKey.Public().(ed25519.PublicKey), exporterName, time.Hour)
			econn := es.serve(b, tok)
			begin := time.Now()
			conn, err := mesh.Dial(b.Context(), l.dialConfig(loopback{}, tok, policy, nil))
			require.NoError(b, err)
			powerOn(b, client.New(conn))
			if policy == mesh.DirectOnly {
				tDirect += time.Since(begin)
			} else {
				tRelay += time.Since(begin)
			}
			conn.Close()
			econn.Close()
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) / 1000 }
	b.ReportMetric(per(tBare), "quic-handshake-ms")
	b.ReportMetric(per(tDirect), "direct-ms")
	b.ReportMetric(per(tRelay), "relay-ms")
}

// powerCall is one power On call.
func powerCall(ctx context.Context, d *client.Driver) error { return power.NewClient(d).On(ctx) }
