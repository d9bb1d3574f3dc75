package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/mesh/identity"
	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
	"github.com/jumpmesh/jumpmesh/test/testcert"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

const (
	relayPort = 443
	probePort = 3478
	oneWay    = 10 * time.Millisecond
	// farOneWay is the "far" host's link: its round trip to the relay is
	// 140 ms where the others' is 40 ms.
	farOneWay  = 60 * time.Millisecond
	exporterID = "board-01"
)

// world is a relay on netsim's internet and peers beside it that speak
// the relay protocol by hand.
type world struct {
	t        *testing.T
	n        *netsim.Network
	ring     *token.Keyring
	relay    *relay.Relay
	reg      *prometheus.Registry
	peerTLS  *tls.Config
	relayUDP netip.AddrPort
	hosts    int
}

// newWorld starts a relay with limits; call it inside the bubble.
func newWorld(t *testing.T, limits relay.Limits) *world {
	var hosts []netsim.Host
	for i := range 6 {
		hosts = append(hosts, netsim.Host{Name: "peer" + strconv.Itoa(i), Link: netsim.Link{Latency: oneWay}})
	}
	hosts = append(hosts, netsim.Host{Name: "far", Link: netsim.Link{Latency: farOneWay}})
	n, err := netsim.New(netsim.Topology{Seed: 1, Public: append([]netsim.Host{{Name: "relay", Link: netsim.Link{Latency: oneWay}}}, hosts...)})
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })

	_, signer, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ring := token.NewKeyring("lab")
	ring.SetKeys([]token.Key{{ID: "k1", Private: signer, Created: time.Now()}}, time.Now())
	serverTLS, peerTLS := relayCert(t)
	reg := prometheus.NewRegistry()
	r, err := relay.New(relay.Config{TLS: serverTLS, Tokens: ring, Limits: limits, Registerer: reg})
	require.NoError(t, err)

	h, err := n.Host("relay")
	require.NoError(t, err)
	main, err := h.ListenPacket("udp", ":"+strconv.Itoa(relayPort))
	require.NoError(t, err)
	second, err := h.ListenPacket("udp", ":"+strconv.Itoa(probePort))
	require.NoError(t, err)
	ln, err := h.Listen("tcp", ":"+strconv.Itoa(relayPort))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.ServeUDP(ctx, main, second) })
	wg.Go(func() { r.ServeTCP(ctx, ln) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		main.Close()
		second.Close()
	})
	return &world{t: t, n: n, ring: ring, relay: r, reg: reg, peerTLS: peerTLS,
		relayUDP: netip.AddrPortFrom(h.Addr(), relayPort)}
}

func relayCert(t *testing.T) (server, peers *tls.Config) {
	server, peers = testcert.Pair(t, "relay.test")
	peers.NextProtos = []string{relaywire.ALPN}
	return server, peers
}

// token signs a session token.
func (w *world) token(lease, exporter string, clientKey ed25519.PublicKey, ttl time.Duration) string {
	now := time.Now()
	tok, err := w.ring.Sign(token.Session, &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: "alice", ID: lease + strconv.FormatInt(now.UnixNano(), 36),
			Audience: jwt.ClaimStrings{token.ExporterAudience(exporter)},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Lease: lease, Client: "alice", Exporter: exporter,
		Cnf: &token.Confirmation{JKT: token.Thumbprint(clientKey)},
	})
	require.NoError(w.t, err)
	return tok
}

// peer speaks the relay protocol by hand over a QUIC or TCP link.
type peer struct {
	t     *testing.T
	key   ed25519.PrivateKey
	pc    net.PacketConn
	tr    *quic.Transport // UDP links
	relay *net.UDPAddr
	ctrl  *relaywire.Stream
	msgs  chan *relayv1.RelayMessage
	data  chan []byte // relayed packets that came in, header included
}

// newPeer connects a peer from a fresh host with a fresh key, over "udp"
// or "tcp".
func (w *world) newPeer(transport string) *peer {
	w.hosts++
	return w.newPeerOn("peer"+strconv.Itoa(w.hosts-1), transport)
}

// newPeerOn connects a peer from host name.
func (w *world) newPeerOn(name, transport string) *peer {
	t := w.t
	h, err := w.n.Host(name)
	require.NoError(t, err)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	cert, err := identity.Certificate(key)
	require.NoError(t, err)
	tlsConf := w.peerTLS.Clone()
	tlsConf.Certificates = []tls.Certificate{cert}
	p := &peer{t: t, key: key, relay: net.UDPAddrFromAddrPort(w.relayUDP),
		msgs: make(chan *relayv1.RelayMessage, 16), data: make(chan []byte, 1024)}
	p.pc, err = h.ListenPacket("udp", ":0")
	require.NoError(t, err)
	if transport == "tcp" {
		c, err := h.Dial(t.Context(), "tcp", w.relayUDP.String())
		require.NoError(t, err)
		tc := tls.Client(c, tlsConf)
		require.NoError(t, tc.HandshakeContext(t.Context()))
		p.ctrl = relaywire.NewStream(tc)
	} else {
		tr := &quic.Transport{Conn: p.pc}
		p.tr = tr
		qc, err := tr.Dial(t.Context(), net.UDPAddrFromAddrPort(w.relayUDP), tlsConf, &quic.Config{KeepAlivePeriod: 5 * time.Second})
		require.NoError(t, err)
		str, err := qc.OpenStream()
		require.NoError(t, err)
		p.ctrl = relaywire.NewStream(str)
		t.Cleanup(func() { qc.CloseWithError(0, ""); tr.Close() })
		go p.readUDP(tr)
	}
	t.Cleanup(func() { p.ctrl.Close(); p.pc.Close() })
	go p.readLink()
	return p
}

func (p *peer) readLink() {
	for {
		k, b, err := p.ctrl.Read()
		if err != nil {
			return
		}
		switch k {
		case relaywire.FrameControl:
			m := &relayv1.RelayMessage{}
			if proto.Unmarshal(b, m) == nil {
				p.msgs <- m
			}
		case relaywire.FrameData:
			p.data <- append([]byte(nil), b...)
		}
	}
}

// readUDP takes the relay's non-QUIC packets off the QUIC socket.
func (p *peer) readUDP(tr *quic.Transport) {
	buf := make([]byte, 2048)
	for {
		n, _, err := tr.ReadNonQUICPacket(context.Background(), buf)
		if err != nil {
			return
		}
		p.data <- append([]byte(nil), buf[:n]...)
	}
}

func (p *peer) send(m *relayv1.PeerMessage) { require.NoError(p.t, p.ctrl.SendControl(m)) }

// join sends a join and returns the relay's first answer.
func (p *peer) join(ref uint32, tok, exporter string, role relayv1.Role) *relayv1.RelayMessage {
	p.send(&relayv1.PeerMessage{Msg: &relayv1.PeerMessage_Join{Join: &relayv1.Join{
		Ref: ref, Token: tok, Exporter: exporter, Role: role, Instance: uint64(ref) + 100}}})
	return p.next()
}

// next returns the relay's next message, failing after a few (virtual)
// minutes.
func (p *peer) next() *relayv1.RelayMessage {
	p.t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(3 * time.Minute):
		require.FailNow(p.t, "no message from the relay")
		return nil
	}
}

// quiet asserts that nothing is waiting: call it after synctest.Wait.
func (p *peer) quiet() {
	p.t.Helper()
	select {
	case m := <-p.msgs:
		require.Failf(p.t, "unexpected message", "%v", m)
	default:
	}
}

func (p *peer) pub() ed25519.PublicKey { return p.key.Public().(ed25519.PublicKey) }

// sendData sends a relayed packet on channel ch: over UDP beside the QUIC
// link, or in a frame on a TCP one.
func (p *peer) sendData(ch uint64, payload []byte) {
	b := make([]byte, relaywire.DataHeaderSize, relaywire.DataHeaderSize+len(payload))
	relaywire.PutDataHeader(b, ch)
	b = append(b, payload...)
	if p.tr == nil {
		p.ctrl.SendData(b)
		return
	}
	_, err := p.tr.WriteTo(b, p.relay)
	require.NoError(p.t, err)
}
