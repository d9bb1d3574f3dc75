package netsim

import (
	"net/netip"
	"time"
)

// router is a site's router: the LAN's gateway, its firewall and its NAT.
// It forwards in no time; delays come from links.
type router struct {
	name     string // "router SITE", for traces
	addr     netip.Addr
	nat      *nat
	blockUDP bool
	allowTCP map[uint16]bool // nil allows every port
	lan      map[netip.Addr]*Node
	up, down *pipe // the site's uplink
}

// firewallAllows applies the site's Firewall to a packet leaving the LAN.
func (r *router) firewallAllows(p *packet) bool {
	if p.proto == protoUDP {
		return !r.blockUDP
	}
	return r.allowTCP == nil || r.allowTCP[p.dst.Port()]
}

// fromLAN takes a packet a site host sent: hosts of the LAN reach each other
// directly; everything else goes through the router.
func (n *Network) fromLAN(r *router, p *packet) {
	if h := r.lan[p.dst.Addr()]; h != nil {
		n.send(h.in, p)
		return
	}
	if !r.firewallAllows(p) {
		n.drop(p, r.name, DropFirewall)
		return
	}
	hairpin := p.dst.Addr() == r.addr // forwarded once, by toLAN
	if !hairpin && !n.hop(p, r.name) {
		return
	}
	port, ok := r.nat.outbound(n, p.proto, p.src, p.dst, time.Now())
	if !ok {
		n.drop(p, r.name, DropPortsExhausted)
		return
	}
	p.src = netip.AddrPortFrom(r.addr, port)
	n.emit(EventTranslate, p, r.name, NotDropped)
	if hairpin {
		if !r.nat.cfg.Hairpinning {
			n.drop(p, r.name, DropHairpin)
			return
		}
		n.toLAN(r, p)
		return
	}
	n.send(r.up, p)
}

// toLAN takes a packet addressed to the router's public address: from the
// internet, or hairpinned from the LAN.
func (n *Network) toLAN(r *router, p *packet) {
	if p.proto == protoUDP && r.blockUDP {
		n.drop(p, r.name, DropFirewall)
		return
	}
	internal, reason := r.nat.inbound(p.proto, p.src, p.dst.Port(), time.Now())
	if reason != NotDropped {
		n.drop(p, r.name, reason)
		return
	}
	if !n.hop(p, r.name) {
		return
	}
	p.dst = internal
	n.emit(EventTranslate, p, r.name, NotDropped)
	n.send(r.lan[internal.Addr()].in, p)
}

// internet routes a packet between public hosts and site routers.
func (n *Network) internet(p *packet) {
	if !n.hop(p, "internet") {
		return
	}
	dst := p.dst.Addr()
	if h := n.public[dst]; h != nil {
		n.send(h.in, p)
		return
	}
	if r := n.routers[dst]; r != nil {
		n.send(r.down, p)
		return
	}
	n.drop(p, "internet", DropNoRoute)
}
