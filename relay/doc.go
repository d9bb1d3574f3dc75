// Package relay is the mesh's meeting point and fallback path: it tells
// each peer the address it sees it come from, pairs the client and the
// exporter of a session, times their hole punching, and forwards their
// packets when no direct path opens. It forwards only ciphertext: the
// client-to-exporter QUIC connection is end-to-end TLS 1.3 with both keys
// pinned, and the relay sees packets it cannot read. A relay operator
// learns who talks to whom, when, and how much; nothing else.
//
// # Links
//
// A peer keeps one link to the relay: a QUIC connection (UDP), or TLS over
// TCP for networks that block UDP. Both ask for the peer's certificate, an
// Ed25519 key (package identity). On the link the peer joins sessions
// (relayv1.Join) with the coordinator's session token; the relay checks
// it (signature, kind, exporter audience, expiry) and, for a client, that
// the link's key is the key the token is bound to (cnf.jkt): TLS has proved
// the peer holds it. A session is what the tokens of one lease, client,
// exporter and client key have in common, so refreshed tokens stay in it.
// When both sides are there, each gets Paired: the other's candidates for
// a direct path, the address the relay sees first.
//
// # Relayed packets
//
// End-to-end QUIC packets travel on the peer's own UDP socket, to the
// relay's QUIC port, behind a 9-byte header (relaywire.TypeData and a
// channel id the relay gave the join); the relay swaps in the receiver's
// channel id and sends the packet on, from the socket's read loop, with no
// copy. The channel id is a random 64-bit secret of the peer and the relay:
// it admits packets, and the latest address it comes from is where the
// other side's packets go, so a NAT rebinding costs nothing. A TCP link
// carries the same packets in frames. The peers' QUIC connection does not
// notice the difference between a relayed and a direct path except in the
// address it sends to (package mesh).
//
// # Addresses and punching
//
// Address probes (relaywire.TypeProbe) are answered on the QUIC port and on
// a second port: a NAT that maps one socket to different ports for the two
// is endpoint-dependent (symmetric), and its reflexive address is of no use
// to the other side; when both sides are so, no punching is tried. The
// relay sends Paired (and Punch, for later rounds) to both sides timed so
// that both get it at the same moment: the nearer side's message waits half
// the difference of the two links' round trips. Packets sent too early are
// filtered by the far NAT, and a Linux router that accepts unsolicited UDP
// keeps a conntrack entry for them that makes a port-preserving NAT pick a
// new port for the far side: punching then fails while it retries.
//
// # Limits and metrics
//
// Limits bound the links, the sessions per client or exporter, and the
// bandwidth per peer and per session (token buckets; packets over them are
// dropped, which QUIC's congestion control answers by slowing down).
// Metrics are Prometheus counters and gauges under jumpmesh_relay_.
package relay
