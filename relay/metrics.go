package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus metrics.
type metrics struct {
	links    *prometheus.GaugeVec
	sessions prometheus.Gauge
	paired   prometheus.Gauge
	joins    *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	packets  *prometheus.CounterVec
	drops    *prometheus.CounterVec
	probes   prometheus.Counter

	// Children used on the forwarding path, resolved once.
	udpBytes, tcpBytes, udpPackets, tcpPackets    prometheus.Counter
	dropNoPeer, dropUnknown, dropLimit, dropQueue prometheus.Counter
}

// Drop reasons.
const (
	dropNoPeer  = "no_peer"         // the other side is not there
	dropUnknown = "unknown_channel" // no such channel
	dropLimit   = "rate_limit"      // a bandwidth limit
	dropQueue   = "queue_full"      // a TCP link's queue is full
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		links: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "links",
			Help: "Peers connected, by transport (udp: QUIC, tcp: TLS over TCP)."}, []string{"transport"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "sessions",
			Help: "Sessions with at least one side joined."}),
		paired: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "paired_sessions",
			Help: "Sessions with both sides joined."}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "joins_total",
			Help: "Joins, by result: ok or the reason for refusing."}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "forwarded_bytes_total",
			Help: "Bytes of end-to-end packets forwarded, by the transport they arrived on."}, []string{"transport"}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "forwarded_packets_total",
			Help: "End-to-end packets forwarded, by the transport they arrived on."}, []string{"transport"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "dropped_packets_total",
			Help: "End-to-end packets dropped, by reason."}, []string{"reason"}),
		probes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "probes_total",
			Help: "Address probes answered."}),
	}
	m.udpBytes, m.tcpBytes = m.bytes.WithLabelValues("udp"), m.bytes.WithLabelValues("tcp")
	m.udpPackets, m.tcpPackets = m.packets.WithLabelValues("udp"), m.packets.WithLabelValues("tcp")
	m.dropNoPeer, m.dropUnknown = m.drops.WithLabelValues(dropNoPeer), m.drops.WithLabelValues(dropUnknown)
	m.dropLimit, m.dropQueue = m.drops.WithLabelValues(dropLimit), m.drops.WithLabelValues(dropQueue)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.links, m.sessions, m.paired, m.joins, m.bytes, m.packets, m.drops, m.probes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register relay metrics: %w", err)
			}
		}
	}
	return m, nil
}
