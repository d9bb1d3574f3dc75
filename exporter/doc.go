// Package exporter serves one device's driver tree over the session
// protocol. It builds the tree from an ExporterConfig and answers each
// stream a client opens: the report, driver calls, byte streams, logs.
//
// It depends on a stream acceptor, not a transport: a Unix socket in local
// mode, QUIC streams through the mesh.
package exporter
