// Package drivers defines what a driver is to an exporter: a node of the
// driver tree that serves one or more typed interfaces (protobuf services),
// built by type name from its YAML config block.
//
// Interface packages (drivers/power, drivers/serial, ...) bind their service
// to a Go interface, give clients a typed client and contribute `j`
// subcommands; driver packages (drivers/virtual, ...) register types that
// implement them.
package drivers
