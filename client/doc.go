// Package client drives an exporter's devices over the session protocol: it
// reads the driver tree and calls drivers, over any transport that opens
// streams (a Unix socket in local mode and inside `jmp shell`, a QUIC
// connection through the mesh).
//
// Typed clients for each driver interface live beside the interface, in
// drivers/power, drivers/serial and so on; they are thin wrappers of Driver.
package client
