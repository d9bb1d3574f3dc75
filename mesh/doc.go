// Package mesh connects a client and an exporter over QUIC: directly when
// the network allows, through a relay (package relay) when it does not,
// and moves the connection between the two as paths open and die, without
// the session's streams noticing more than a stall.
//
// A client calls Dial with the coordinator's session token; an exporter
// keeps a Listener and Joins each session the coordinator tells it of. Both
// get a Conn: OpenStream on the client, AcceptStream on the exporter, one
// QUIC stream per driver call or byte stream, so a stalled console never
// blocks a power call. Path and RTT say how the session's packets go.
//
// # One socket
//
// Each peer has one UDP socket and one quic.Transport on it, shared
// through package udpmux: the QUIC link to the relay, the address probes,
// the punch packets, the relayed packets and the direct connection all use
// it, so the NAT mapping the relay sees is the one the far side punches
// to. The socket keeps quic-go's fast paths (batched reads, GSO): a plain
// net.PacketConn wrapper costs a third of the throughput on loopback.
//
// # One connection, two kinds of path
//
// The end-to-end connection is a QUIC connection with TLS 1.3, both ends
// authenticated by key: the exporter's as the coordinator pinned it, the
// client's as the session token binds it (cnf.jkt); the TLS server name, a
// hash of the session, tells a busy exporter which session a handshake is
// for. Relayed, its packets go to a virtual address (udpmux), which the
// socket sends to the relay behind the session's channel header, and
// relayed packets come back from that address; the relay forwards
// ciphertext it cannot read. Direct, they go to the far peer's address.
// Moving between the two is QUIC connection migration, client-driven:
// Conn.AddPath with a transport whose writes all go to the new address
// through the same socket (QUIC lets a client change its own address, not
// its server's; a path transport that redirects does the rest), Probe,
// Switch, then a control message (a nudge) so that the exporter, which
// follows the client's address, moves at once. Streams live on.
//
// # Finding a direct path
//
// The relay tells each peer the address it sees, on two ports: when the
// two differ, the peer's NAT maps by destination (symmetric), its reflexive
// address is of no use to the far side, and when both sides are so they
// only try each other's own addresses (a shared LAN). Candidates are the
// reflexive address, the host's interface addresses and any configured
// public one. The relay hands each side the other's, timed so that both
// start punching at the same moment. To the far side's NAT mapping, each
// side first sends a ping with a TTL of 2, which opens its own NAT towards
// the other but dies before the far router: a packet that reached that
// router before its own side's left would, on a Linux router that lets
// unsolicited UDP in, leave a conntrack entry that moves the far side's
// mapping to another port (the conntrack trap). Pings to it then leave at
// 0.1, 0.2, 0.4, 0.8, 1.6 and 3.2 s, and to the far side's own addresses
// at 0 too; a ping from an unlisted address (a NAT's new port towards us)
// is answered and pinged back, and a pong proves a path both ways.
//
// The client races the relayed connection (dialed as soon as the relay
// pairs the two sides) against a direct one (dialed at the first pong):
// the first handshake to finish wins (happy eyeballs), and a relayed
// winner moves to the direct path when punching finds one. A relayed
// session asks for another punching round every minute (Tailscale's
// interval). On a direct path the client pings every second, which also
// keeps both NAT mappings alive; after 3.5 s without a pong the path is
// dead and the connection moves to the relay: a console stalls about 4 s.
// A direct path the connection moved to is turned towards the relay in
// place (udpmux.PathConn.Retarget), without a probe: quic-go sends a path
// probe only with room in the congestion window, which packets lost on
// the dead path fill mid-upload. A connection whose own dial went direct
// migrates instead, and an upload under way then may not survive.
//
// # Relay link
//
// The link to the relay is QUIC, with TLS over TCP tried beside it after
// 500 ms for networks that block UDP; over TCP the relayed packets travel
// in the link's frames, on a transport of their own (a peer without UDP
// has no direct path to move to). Keep-alives every 5 s hold the NAT
// mapping and find a restarted relay (it answers with a stateless reset,
// or says it does not know the channel of a relayed packet); the peer
// reconnects and joins its sessions again, and a relayed connection goes
// on where it stopped.
//
// # Session life
//
// A session lives as long as its token: the client renews it (DialConfig
// Token) when a quarter of its life is left and hands the new one to the
// relay and the exporter; when renewal stops giving later tokens the lease
// is ending, and at the newest token's expiry both sides close the
// connection with a reason that streams report (ErrSessionExpired). An
// exporter that restarts joins again; the client sees a new instance,
// drops the old connection (its streams end with ErrPeerRestarted) and
// connects anew, and new calls go through.
package mesh
