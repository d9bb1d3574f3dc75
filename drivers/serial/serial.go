// Package serial is the serial console interface: it binds the
// jumpmesh.drivers.serial.v1.Serial service to the Server that serial
// drivers implement, shares one device among many consoles (Hub), and gives
// clients a typed Client and `j` its console, pipe and expect commands.
package serial

import (
	"context"
	"io"

	"github.com/jumpmesh/jumpmesh/drivers"
	serialv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/serial/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Interface is the full name of the service.
const Interface = "jumpmesh.drivers.serial.v1.Serial"

var service = serialv1.File_jumpmesh_drivers_serial_v1_serial_proto.Services().ByName("Serial")

// Server is a serial device as drivers give it; Hub implements it.
type Server interface {
	// Console copies the device's output to conn from now on and conn's
	// input to the device. It returns once conn's input has ended (after
	// passing it all on), when ctx ends, when conn fails or when the device
	// goes away.
	Console(ctx context.Context, conn io.ReadWriter) error
}

// Bind serves s as the serial interface.
func Bind(s Server) drivers.Interface {
	return drivers.Interface{
		Service: service,
		Handlers: map[protoreflect.Name]drivers.Handler{
			"Console": drivers.Bytes(func(ctx context.Context, _ *serialv1.ConsoleRequest, conn drivers.ByteStream) (*serialv1.ConsoleResponse, error) {
				return &serialv1.ConsoleResponse{}, s.Console(ctx, conn)
			}),
		},
	}
}
