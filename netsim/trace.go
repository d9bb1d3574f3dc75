package netsim

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// TraceEnv is the environment variable that, set to a true value ("1"),
// logs every packet event through log/slog's default logger.
const TraceEnv = "NETSIM_TRACE"

// EventKind is what happened to a packet.
type EventKind int

const (
	// EventSend: a host put the packet on its link.
	EventSend EventKind = iota
	// EventArrive: the packet left a link (At names it).
	EventArrive
	// EventTranslate: a router's NAT rewrote the packet; Src and Dst are the
	// rewritten ones.
	EventTranslate
	// EventDeliver: the packet reached a socket or TCP connection.
	EventDeliver
	// EventDrop: the packet is gone; Reason says why.
	EventDrop
)

func (k EventKind) String() string {
	switch k {
	case EventSend:
		return "send"
	case EventArrive:
		return "arrive"
	case EventTranslate:
		return "translate"
	case EventDeliver:
		return "deliver"
	case EventDrop:
		return "drop"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// DropReason says why a packet was dropped.
type DropReason int

const (
	NotDropped DropReason = iota
	// DropLoss: the link's random loss.
	DropLoss
	// DropQueueFull: the link's queue had no room (tail drop).
	DropQueueFull
	// DropMTU: the packet is larger than the link's MTU.
	DropMTU
	// DropNoMapping: inbound to a router port that has no NAT mapping.
	DropNoMapping
	// DropNATFiltered: a mapping exists, but its filtering rejects the sender.
	DropNATFiltered
	// DropConntrack: inbound absorbed by the router because an earlier
	// unsolicited packet from the same sender created a conntrack entry
	// (NAT.AcceptUnsolicited).
	DropConntrack
	// DropFirewall: the site's Firewall blocks it.
	DropFirewall
	// DropHairpin: to the router's own public address with hairpinning off.
	DropHairpin
	// DropNoRoute: no host or router has the destination address.
	DropNoRoute
	// DropPortUnreachable: nothing listens on the destination port.
	DropPortUnreachable
	// DropSocketBuffer: the receiving socket's buffer is full.
	DropSocketBuffer
	// DropBacklogFull: a TCP listener's accept backlog is full.
	DropBacklogFull
	// DropPortsExhausted: the NAT has no free external port.
	DropPortsExhausted
	// DropTTL: a router would have forwarded it, but its TTL ran out.
	DropTTL
)

func (r DropReason) String() string {
	switch r {
	case NotDropped:
		return "none"
	case DropLoss:
		return "loss"
	case DropQueueFull:
		return "queue full"
	case DropMTU:
		return "larger than MTU"
	case DropNoMapping:
		return "no NAT mapping"
	case DropNATFiltered:
		return "NAT filtered"
	case DropConntrack:
		return "conntrack entry of an unsolicited packet"
	case DropFirewall:
		return "firewall"
	case DropHairpin:
		return "hairpinning disabled"
	case DropNoRoute:
		return "no route"
	case DropPortUnreachable:
		return "port unreachable"
	case DropSocketBuffer:
		return "socket buffer full"
	case DropTTL:
		return "TTL expired"
	case DropBacklogFull:
		return "listen backlog full"
	case DropPortsExhausted:
		return "NAT ports exhausted"
	}
	return fmt.Sprintf("DropReason(%d)", int(r))
}

// Event is one step of one packet.
type Event struct {
	Time  time.Time
	Kind  EventKind
	Proto string // "udp" or "tcp"
	Src   netip.AddrPort
	Dst   netip.AddrPort
	Size  int    // bytes on the wire, IP and UDP/TCP headers included
	At    string // where: "link NAME out", "uplink SITE in", "router SITE", "internet", "host NAME"
	// Reason is set for EventDrop.
	Reason DropReason
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %s %s %s->%s %dB at %s", e.Time.Format("15:04:05.000000"), e.Kind, e.Proto, e.Src, e.Dst, e.Size, e.At)
	if e.Kind == EventDrop {
		s += ": " + e.Reason.String()
	}
	return s
}

// Option configures a Network.
type Option func(*Network)

// WithTrace calls fn for every packet event. fn runs while the network is
// locked: it must return quickly and must not call into the Network.
func WithTrace(fn func(Event)) Option {
	return func(n *Network) { n.addTracer(fn) }
}

func (n *Network) addTracer(fn func(Event)) {
	if prev := n.trace; prev != nil {
		n.trace = func(e Event) { prev(e); fn(e) }
		return
	}
	n.trace = fn
}

// traceFromEnv returns a tracer logging through slog when TraceEnv is true.
func traceFromEnv() func(Event) {
	if on, _ := strconv.ParseBool(os.Getenv(TraceEnv)); !on {
		return nil
	}
	return func(e Event) {
		attrs := []slog.Attr{
			// The handler's own timestamp is too coarse for virtual time.
			slog.String("t", e.Time.Format("15:04:05.000000")),
			slog.String("event", e.Kind.String()),
			slog.String("proto", e.Proto),
			slog.String("src", e.Src.String()),
			slog.String("dst", e.Dst.String()),
			slog.Int("size", e.Size),
			slog.String("at", e.At),
		}
		if e.Kind == EventDrop {
			attrs = append(attrs, slog.String("reason", e.Reason.String()))
		}
		slog.LogAttrs(context.Background(), slog.LevelInfo, "netsim packet", attrs...)
	}
}

// emit reports an event; callers hold n.mu. Nothing is built when tracing
// is off.
func (n *Network) emit(kind EventKind, p *packet, at string, reason DropReason) {
	if n.trace == nil {
		return
	}
	n.trace(Event{
		Time:   time.Now(),
		Kind:   kind,
		Proto:  p.proto.String(),
		Src:    p.src,
		Dst:    p.dst,
		Size:   p.size,
		At:     at,
		Reason: reason,
	})
}

func (n *Network) drop(p *packet, at string, reason DropReason) {
	n.emit(EventDrop, p, at, reason)
}
