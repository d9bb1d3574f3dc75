package mesh

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	relayv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/relay/v1"
	"github.com/quic-go/quic-go"
)

// OpenLead is how long after the packets that open its NAT a punching
// round's first ping leaves.
const OpenLead = openLead

// DialIdle connects to an exporter's socket at addr for the session of
// tok, as the client of cfg, on a socket of its own, and leaves the
// connection idle: a connection that lost the client's race and was never
// closed. stop closes it and its socket.
func DialIdle(ctx context.Context, cfg DialConfig, tok string, addr netip.AddrPort) (qc *quic.Conn, stop func(), err error) {
	claims, err := readClaims(tok)
	if err != nil {
		return nil, nil, err
	}
	p, err := newPeer(relayv1.Role_ROLE_CLIENT, cfg.Key, cfg.Relay, cfg.Network, cfg.Logger)
	if err != nil {
		return nil, nil, err
	}
	var mismatch atomic.Bool
	qc, err = p.tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), p.clientTLS(idOf(claims).serverName(), cfg.ExporterKey, &mismatch), e2eConfig(false))
	if err != nil {
		p.close()
		return nil, nil, err
	}
	return qc, func() { qc.CloseWithError(0, ""); p.close() }, nil
}
