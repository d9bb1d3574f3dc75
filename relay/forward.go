package relay

import (
	"net"

	"github.com/jumpmesh/jumpmesh/mesh/udpmux"
	"github.com/jumpmesh/jumpmesh/relay/relaywire"
)

// dataPlane is the relay as the UDP socket's handler: it forwards relayed
// packets and answers probes on the socket's read loop, without a copy or
// a goroutine hop.
type dataPlane Relay

func (d *dataPlane) Inbound(p []byte, from *net.UDPAddr) (udpmux.Action, []byte, *net.UDPAddr) {
	r := (*Relay)(d)
	switch p[0] {
	case relaywire.TypeData:
		id, err := relaywire.DataChannel(p)
		if err != nil {
			return udpmux.Drop, nil, nil
		}
		ch := r.channel(id)
		if ch == nil || ch.l.transport != "udp" {
			// Tell the sender, so that it joins again at once (the relay
			// restarted, or its join ended). The answer is smaller than
			// the packet: nothing to amplify.
			r.m.dropUnknown.Inc()
			return udpmux.Forward, relaywire.AppendUnknownChannel(p[:0], id), from
		}
		if a := ch.addr.Load(); a == nil || a.Port != from.Port || !a.IP.Equal(from.IP) {
			ch.addr.Store(from) // the peer's NAT rebound it
		}
		dst := r.route(ch, len(p))
		if dst == nil {
			return udpmux.Drop, nil, nil
		}
		r.m.udpBytes.Add(float64(len(p) - relaywire.DataHeaderSize))
		r.m.udpPackets.Inc()
		relaywire.PutDataHeader(p, dst.id)
		if dst.l.transport == "tcp" {
			if !dst.l.ctrl.SendData(p) {
				r.m.dropQueue.Inc()
			}
			return udpmux.Drop, nil, nil
		}
		return udpmux.Forward, p, dst.addr.Load()
	case relaywire.TypeProbe:
		if reply, ok := r.probeReply(p, from); ok {
			return udpmux.Forward, reply, from
		}
	}
	return udpmux.Drop, nil, nil
}

// Redirect: the relay has no virtual addresses.
func (d *dataPlane) Redirect(*net.UDPAddr) ([]byte, *net.UDPAddr, bool) { return nil, nil, false }

// probeReply turns a probe into its answer, in place.
func (r *Relay) probeReply(p []byte, from *net.UDPAddr) ([]byte, bool) {
	nonce, err := relaywire.ParseProbe(p)
	if err != nil {
		return nil, false
	}
	r.m.probes.Inc()
	return relaywire.AppendProbeReply(p[:0], nonce, from.AddrPort()), true
}

// forwardTCP forwards a packet that came on a TCP link.
func (r *Relay) forwardTCP(l *link, p []byte) {
	id, err := relaywire.DataChannel(p)
	if err != nil {
		return
	}
	ch := r.channel(id)
	if ch == nil || ch.l != l {
		r.m.dropUnknown.Inc()
		return
	}
	dst := r.route(ch, len(p))
	if dst == nil {
		return
	}
	r.m.tcpBytes.Add(float64(len(p) - relaywire.DataHeaderSize))
	r.m.tcpPackets.Inc()
	relaywire.PutDataHeader(p, dst.id)
	if dst.l.transport == "tcp" {
		if !dst.l.ctrl.SendData(p) {
			r.m.dropQueue.Inc()
		}
		return
	}
	r.mu.Lock()
	udp := r.udp
	r.mu.Unlock()
	if a := dst.addr.Load(); udp != nil && a != nil {
		udp.WriteTo(p, a)
	}
}

func (r *Relay) channel(id uint64) *channel {
	v, ok := r.channels.Load(id)
	if !ok {
		return nil
	}
	return v.(*channel)
}

// route returns where a packet of n bytes from ch goes, or nil when it is
// dropped: the other side is not there, or a limit says no.
func (r *Relay) route(ch *channel, n int) *channel {
	dst := ch.peer.Load()
	if dst == nil {
		r.m.dropNoPeer.Inc()
		return nil
	}
	if !ch.s.bucket.allow(n) || !ch.usage.bucket.allow(n) {
		r.m.dropLimit.Inc()
		return nil
	}
	return dst
}
