// Package power is the power interface: it binds the
// jumpmesh.drivers.power.v1.Power service to the Server that power drivers
// implement, and gives clients a typed Client and `j` its power commands.
package power

import (
	"context"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	powerv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/power/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Interface is the full name of the service.
const Interface = "jumpmesh.drivers.power.v1.Power"

var service = powerv1.File_jumpmesh_drivers_power_v1_power_proto.Services().ByName("Power")

// Status is the power state and when it last changed.
type Status struct {
	On    bool
	Since time.Time
}

// String is "on" or "off".
func (s Status) String() string {
	if s.On {
		return "on"
	}
	return "off"
}

// Server is a power switch as drivers implement it.
type Server interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	// Cycle turns the power off, waits delay (the driver's configured
	// default when 0) and turns it on again.
	Cycle(ctx context.Context, delay time.Duration) error
	Status(ctx context.Context) (Status, error)
	// Watch calls fn with the current status, then with every change, until
	// ctx ends, fn fails or the driver closes.
	Watch(ctx context.Context, fn func(Status) error) error
}

// Bind serves s as the power interface.
func Bind(s Server) drivers.Interface {
	return drivers.Interface{
		Service: service,
		Handlers: map[protoreflect.Name]drivers.Handler{
			"On": drivers.Unary(func(ctx context.Context, _ *powerv1.OnRequest) (*powerv1.OnResponse, error) {
				return &powerv1.OnResponse{}, s.On(ctx)
			}),
			"Off": drivers.Unary(func(ctx context.Context, _ *powerv1.OffRequest) (*powerv1.OffResponse, error) {
				return &powerv1.OffResponse{}, s.Off(ctx)
			}),
			"Cycle": drivers.Unary(func(ctx context.Context, req *powerv1.CycleRequest) (*powerv1.CycleResponse, error) {
				var delay time.Duration
				if d := req.GetDelay(); d != nil {
					if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
						return nil, wire.Errorf(wire.InvalidArgument, "cycle delay %v is not a positive duration; leave it out to use the driver's default", d.AsDuration())
					}
					delay = d.AsDuration()
				}
				return &powerv1.CycleResponse{}, s.Cycle(ctx, delay)
			}),
			"Status": drivers.Unary(func(ctx context.Context, _ *powerv1.StatusRequest) (*powerv1.StatusResponse, error) {
				st, err := s.Status(ctx)
				if err != nil {
					return nil, err
				}
				return toProto(st), nil
			}),
			"Watch": drivers.ServerStream(func(ctx context.Context, _ *powerv1.WatchRequest, send func(*powerv1.StatusResponse) error) error {
				return s.Watch(ctx, func(st Status) error { return send(toProto(st)) })
			}),
		},
	}
}

func toProto(s Status) *powerv1.StatusResponse {
	state := powerv1.State_STATE_OFF
	if s.On {
		state = powerv1.State_STATE_ON
	}
	return &powerv1.StatusResponse{State: state, Since: timestamppb.New(s.Since)}
}

func fromProto(r *powerv1.StatusResponse) (Status, error) {
	st := Status{Since: r.GetSince().AsTime()}
	switch r.GetState() {
	case powerv1.State_STATE_ON:
		st.On = true
	case powerv1.State_STATE_OFF:
	default:
		return Status{}, wire.Errorf(wire.Internal, "the exporter sent power state %v; is it newer than this client?", r.GetState())
	}
	return st, nil
}

// durationOrNil is nil for 0, which asks the driver for its default.
func durationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
