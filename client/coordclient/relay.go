package coordclient

import (
	"errors"

	"github.com/jumpmesh/jumpmesh/mesh"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
)

// ErrNoRelay: the coordinator handed out no relay, so the mesh has no
// place for clients and exporters to meet.
var ErrNoRelay = errors.New("the coordinator hands out no relay, so clients cannot reach exporters; " +
	"its admin must run it with its built-in relay (the default) or --relay-endpoint")

// RelayConfig is the mesh's side of the relay the coordinator handed out:
// its addresses, and its certificate trusted by the fingerprint the
// coordinator gave, as the coordinator's own is trusted.
func RelayConfig(ep *coordinatorv1.RelayEndpoint) (mesh.Relay, error) {
	if ep.GetUdp() == "" && ep.GetTcp() == "" {
		return mesh.Relay{}, ErrNoRelay
	}
	if ep.GetCaFingerprint() == "" {
		return mesh.Relay{}, errors.New("the coordinator named a relay but no certificate to trust it by; upgrade the coordinator")
	}
	return mesh.Relay{
		UDP:      ep.GetUdp(),
		ProbeUDP: ep.GetProbeUdp(),
		TCP:      ep.GetTcp(),
		TLS:      pinnedTLS(ep.GetCaFingerprint(), "the relay", "the coordinator"),
	}, nil
}
