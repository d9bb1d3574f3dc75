// Package relayhost runs a mesh relay (package relay) in a process: it
// opens the relay's sockets, names the endpoint peers reach it at, and
// serves until told to stop. The relay built into the coordinator and
// `jmp relay` share it.
package relayhost

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/jumpmesh/jumpmesh/relay"
	"github.com/quic-go/quic-go"
)

// Addrs are the addresses a relay listens on.
type Addrs struct {
	// UDP is its QUIC port, where relayed packets go too.
	UDP string
	// ProbeUDP is its second UDP port, which answers address probes only.
	ProbeUDP string
	// TCP is its TLS over TCP port; empty serves none.
	TCP string
}

// Host is a relay's open sockets.
type Host struct {
	udp, probe net.PacketConn
	tcp        net.Listener // nil without TCP
}

// Listen opens the sockets of a.
func Listen(a Addrs) (*Host, error) {
	if a.UDP == "" || a.ProbeUDP == "" {
		return nil, errors.New("relay: give both UDP addresses, the QUIC port and the probe port")
	}
	h := &Host{}
	var err error
	if h.udp, err = net.ListenPacket("udp", a.UDP); err != nil {
		return nil, fmt.Errorf("relay: listen on UDP %s: %w", a.UDP, err)
	}
	if h.probe, err = net.ListenPacket("udp", a.ProbeUDP); err != nil {
		h.Close()
		return nil, fmt.Errorf("relay: listen on UDP %s (probe port): %w", a.ProbeUDP, err)
	}
	if a.TCP != "" {
		if h.tcp, err = net.Listen("tcp", a.TCP); err != nil {
			h.Close()
			return nil, fmt.Errorf("relay: listen on TCP %s: %w", a.TCP, err)
		}
	}
	return h, nil
}

// Close closes the sockets.
func (h *Host) Close() {
	if h.udp != nil {
		h.udp.Close()
	}
	if h.probe != nil {
		h.probe.Close()
	}
	if h.tcp != nil {
		h.tcp.Close()
	}
}

// Endpoint is how peers reach the relay: at host (the sockets' own
// address when empty) on the ports it listens on, trusting the
// certificate of fingerprint.
func (h *Host) Endpoint(host, fingerprint string) *coordinatorv1.RelayEndpoint {
	at := func(a net.Addr) string {
		hst, port, _ := net.SplitHostPort(a.String())
		if host != "" {
			hst = host
		}
		return net.JoinHostPort(hst, port)
	}
	ep := &coordinatorv1.RelayEndpoint{Udp: at(h.udp.LocalAddr()), ProbeUdp: at(h.probe.LocalAddr()), CaFingerprint: fingerprint}
	if h.tcp != nil {
		ep.Tcp = at(h.tcp.Addr())
	}
	return ep
}

// Serve serves r on the sockets until ctx ends or serving fails, then
// closes them.
func (h *Host) Serve(ctx context.Context, r *relay.Relay) error {
	defer h.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errs <- r.ServeUDP(ctx, h.udp, h.probe) })
	if h.tcp != nil {
		wg.Go(func() { errs <- r.ServeTCP(ctx, h.tcp) })
	}
	err := <-errs // the first to end ends the other
	cancel()
	wg.Wait()
	return err
}

// ResetKey derives the relay's stateless reset key from its TLS key, so
// that it stays the same across restarts (a restarted relay then resets
// its peers' old links at their next packet) with nothing more to keep.
func ResetKey(cert tls.Certificate) (*quic.StatelessResetKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("relay: derive the stateless reset key: %w", err)
	}
	k, err := hkdf.Key(sha256.New, der, nil, "jumpmesh relay stateless reset key", len(quic.StatelessResetKey{}))
	if err != nil {
		return nil, fmt.Errorf("relay: derive the stateless reset key: %w", err)
	}
	var key quic.StatelessResetKey
	copy(key[:], k)
	return &key, nil
}

// Endpoint strings name a relay's ports and certificate in one flag value:
// udp=HOST:PORT,probe=HOST:PORT,tcp=HOST:PORT,fingerprint=sha256:HEX.
const (
	keyUDP         = "udp"
	keyProbe       = "probe"
	keyTCP         = "tcp"
	keyFingerprint = "fingerprint"
)

// FormatEndpoint writes ep as ParseEndpoint reads it.
func FormatEndpoint(ep *coordinatorv1.RelayEndpoint) string {
	var parts []string
	for _, kv := range [][2]string{{keyUDP, ep.GetUdp()}, {keyProbe, ep.GetProbeUdp()}, {keyTCP, ep.GetTcp()}, {keyFingerprint, ep.GetCaFingerprint()}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, ",")
}

// ParseEndpoint reads "udp=HOST:PORT,probe=HOST:PORT,tcp=HOST:PORT,
// fingerprint=sha256:HEX", as `jmp relay` prints it. It needs the
// fingerprint and a UDP or TCP address.
func ParseEndpoint(s string) (*coordinatorv1.RelayEndpoint, error) {
	ep := &coordinatorv1.RelayEndpoint{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("relay endpoint %q: %q is not KEY=VALUE; write udp=HOST:PORT,probe=HOST:PORT,tcp=HOST:PORT,fingerprint=sha256:HEX", s, part)
		}
		var dst *string
		switch k {
		case keyUDP:
			dst = &ep.Udp
		case keyProbe:
			dst = &ep.ProbeUdp
		case keyTCP:
			dst = &ep.Tcp
		case keyFingerprint:
			ep.CaFingerprint = v
			continue
		default:
			return nil, fmt.Errorf("relay endpoint %q: unknown key %q; the keys are udp, probe, tcp and fingerprint", s, k)
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			return nil, fmt.Errorf("relay endpoint %q: %s=%q is not HOST:PORT", s, k, v)
		} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("relay endpoint %q: %s=%q has no valid port", s, k, v)
		}
		*dst = v
	}
	switch {
	case ep.Udp == "" && ep.Tcp == "":
		return nil, fmt.Errorf("relay endpoint %q: give udp=HOST:PORT, tcp=HOST:PORT or both", s)
	case ep.CaFingerprint == "":
		return nil, fmt.Errorf("relay endpoint %q: give fingerprint=sha256:HEX, the relay's certificate as `jmp relay` prints it", s)
	}
	return ep, nil
}
