// Package netsim simulates a small internet in process, so the QUIC mesh can
// be tested in virtual time under testing/synctest: a 30 s NAT timeout or a
// 200 ms link takes microseconds, and a run with the same Topology.Seed and
// the same sequence of sends repeats exactly.
//
// A test describes the network once with a Topology (public hosts, sites
// behind NAT routers with firewalls, link characteristics) and runs it with
// New. Each host is a Node handing out standard library types: a UDP
// net.PacketConn that a quic.Transport takes unchanged, and TCP-like
// net.Listener and net.Conn. Packets cross links (latency, jitter, loss,
// bandwidth with a bounded tail-drop queue, MTU), site routers (RFC 4787 NAT
// mapping and filtering, port preservation, mapping timeouts, hairpinning,
// firewall) and the internet between them.
//
// All timing comes from package time, so it is virtual inside a synctest
// bubble and real outside one. Set NETSIM_TRACE=1, or pass WithTrace, to see
// each packet's hops and drops.
package netsim
