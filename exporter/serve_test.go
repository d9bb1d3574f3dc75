package exporter_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jumpmesh/jumpmesh/client"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/exporter/exportertest"
	powerv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/power/v1"
	serialv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/serial/v1"
	storagev1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/storage/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	powerIface  = "jumpmesh.drivers.power.v1.Power"
	serialIface = "jumpmesh.drivers.serial.v1.Serial"
)

// fakeDevice serves the power and serial interfaces in ways the protocol
// tests need: a watch that never ends, an echoing console, a panic.
type fakeDevice struct {
	watchers atomic.Int32 // Watch calls in flight
	consoles atomic.Int32 // Console calls in flight
	closed   atomic.Bool
}

func (f *fakeDevice) Close() error { f.closed.Store(true); return nil }

func (f *fakeDevice) Interfaces() []drivers.Interface {
	return []drivers.Interface{
		{
			Service: powerv1.File_jumpmesh_drivers_power_v1_power_proto.Services().ByName("Power"),
			Handlers: map[protoreflectName]drivers.Handler{
				"On": drivers.Unary(func(context.Context, *powerv1.OnRequest) (*powerv1.OnResponse, error) {
					return &powerv1.OnResponse{}, nil
				}),
				"Off": drivers.Unary(func(context.Context, *powerv1.OffRequest) (*powerv1.OffResponse, error) {
					panic("relay welded shut")
				}),
				"Cycle": drivers.Unary(func(ctx context.Context, _ *powerv1.CycleRequest) (*powerv1.CycleResponse, error) {
					<-ctx.Done() // takes forever: the call's timeout must end it
					return nil, ctx.Err()
				}),
				"Status": drivers.Unary(func(context.Context, *powerv1.StatusRequest) (*powerv1.StatusResponse, error) {
					return nil, wire.Errorf(wire.Unavailable, "the PDU does not answer; check its network cable")
				}),
				"Watch": drivers.ServerStream(func(ctx context.Context, _ *powerv1.WatchRequest, send func(*powerv1.StatusResponse) error) error {
					f.watchers.Add(1)
					defer f.watchers.Add(-1)
					for _, s := range []powerv1.State{powerv1.State_STATE_OFF, powerv1.State_STATE_ON} {
						if err := send(&powerv1.StatusResponse{State: s, Since: timestamppb.Now()}); err != nil {
							return err
						}
					}
					<-ctx.Done()
					return ctx.Err()
				}),
			},
		},
		{
			Service: storagev1.File_jumpmesh_drivers_storage_v1_storage_proto.Services().ByName("Storage"),
			Handlers: map[protoreflectName]drivers.Handler{
				// Write reads a little, then refuses the rest, as a driver
				// that finds a corrupt image does.
				"Write": drivers.Bytes(func(ctx context.Context, _ *storagev1.WriteRequest, s drivers.ByteStream) (*storagev1.WriteResponse, error) {
					if _, err := io.ReadFull(s, make([]byte, 10)); err != nil {
						return nil, err
					}
					return nil, wire.Errorf(wire.DataLoss, "image is corrupt at byte 10")
				}),
				"Info": drivers.Unary(func(context.Context, *storagev1.InfoRequest) (*storagev1.InfoResponse, error) {
					return nil, wire.Errorf(wire.FailedPrecondition, "no disk")
				}),
			},
		},
		{
			Service: serialv1.File_jumpmesh_drivers_serial_v1_serial_proto.Services().ByName("Serial"),
			Handlers: map[protoreflectName]drivers.Handler{
				"Console": drivers.Bytes(func(ctx context.Context, _ *serialv1.ConsoleRequest, s drivers.ByteStream) (*serialv1.ConsoleResponse, error) {
					f.consoles.Add(1)
					defer f.consoles.Add(-1)
					if _, err := io.Copy(s, s); err != nil {
						return nil, err
					}
					return &serialv1.ConsoleResponse{}, nil
				}),
			},
		},
	}
}

var device = &fakeDevice{}

func init() {
	drivers.Register(drivers.Type{Name: "test.fake", Description: "a fake device for protocol tests",
		New: func(*drivers.Build) (drivers.Driver, error) { return device, nil }})
	drivers.Register(drivers.Type{Name: "test.group", Description: "groups children",
		New: func(*drivers.Build) (drivers.Driver, error) { return group{}, nil }})
	drivers.Register(drivers.Type{Name: "test.broken", Description: "fails to build",
		New: func(b *drivers.Build) (drivers.Driver, error) {
			var cfg struct {
				Port string `yaml:"port" required:"true"`
			}
			if err := b.Decode(&cfg); err != nil {
				return nil, err
			}
			return nil, errors.New("no such port " + cfg.Port)
		}})
}

type group struct{}

func (group) Interfaces() []drivers.Interface { return nil }
func (group) Close() error                    { return nil }

const config = `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: bench-01, labels: {board: fake}}
export:
  dut:
    type: test.group
    description: the board
    children:
      fake: {type: test.fake}
`

func driver(t *testing.T, s *client.Session) *client.Driver {
	d, err := s.Driver(t.Context(), "dut.fake")
	require.NoError(t, err)
	return d
}

func TestReport(t *testing.T) {
	s := exportertest.Session(t, config)
	r, err := s.Report(t.Context())
	require.NoError(t, err)
	require.Equal(t, "bench-01", r.GetName())
	require.Equal(t, map[string]string{"board": "fake"}, r.GetLabels())
	require.Len(t, r.GetDrivers(), 2)
	dut, fake := r.GetDrivers()[0], r.GetDrivers()[1]
	require.Equal(t, "dut", dut.GetName())
	require.Equal(t, "the board", dut.GetDescription())
	require.Equal(t, dut.GetUuid(), fake.GetParentUuid())
	require.Equal(t, "test.fake", fake.GetType())
	require.Len(t, fake.GetInterfaces(), 3)
	power := fake.GetInterfaces()[0]
	require.Equal(t, powerIface, power.GetName())
	require.Equal(t, "Switches the device's power.", power.GetDescription())
	require.Equal(t, "Turn the power on.", power.GetMethods()[0].GetDescription())
	require.Equal(t, jumpmeshv1.MethodKind_METHOD_KIND_SERVER_STREAM, power.GetMethods()[4].GetKind())
	require.Equal(t, jumpmeshv1.MethodKind_METHOD_KIND_BYTE_STREAM, fake.GetInterfaces()[2].GetMethods()[0].GetKind())

	// UUIDs derive from the exporter's name and the path: stable across
	// restarts, different across exporters.
	again, err := exportertest.Session(t, config).Report(t.Context())
	require.NoError(t, err)
	require.Equal(t, fake.GetUuid(), again.GetDrivers()[1].GetUuid())
	_, err = s.Driver(t.Context(), "dut.nope")
	require.ErrorContains(t, err, `exporter bench-01 has no driver "dut.nope"; it has: dut, dut.fake`)
}

func TestUnaryCalls(t *testing.T) {
	d := driver(t, exportertest.Session(t, config))
	tests := []struct {
		name   string
		method string
		req    protoMessage
		code   wire.Code
		msg    string
	}{
		{"ok", "On", &powerv1.OnRequest{}, wire.OK, ""},
		{"driver error", "Status", &powerv1.StatusRequest{}, wire.Unavailable, "dut.fake Status: the PDU does not answer; check its network cable"},
		{"panic", "Off", &powerv1.OffRequest{}, wire.Internal, "driver fake panicked in Off: relay welded shut"},
		{"unknown method", "Explode", &powerv1.OnRequest{}, wire.Unimplemented, `jumpmesh.drivers.power.v1.Power has no method "Explode"`},
		{"wrong argument type", "On", &powerv1.CycleRequest{}, wire.InvalidArgument, "jumpmesh.drivers.power.v1.Power.On takes jumpmesh.drivers.power.v1.OnRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Call(t.Context(), powerIface, tt.method, tt.req, &powerv1.OnResponse{})
			if tt.code == wire.OK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, &wire.Error{Code: tt.code})
			require.ErrorContains(t, err, tt.msg)
		})
	}
	err := d.Call(t.Context(), "jumpmesh.drivers.shell.v1.Shell", "List", &powerv1.OnRequest{}, &powerv1.OnResponse{})
	require.ErrorIs(t, err, &wire.Error{Code: wire.Unimplemented})
	require.ErrorContains(t, err, "driver fake (test.fake) does not implement jumpmesh.drivers.shell.v1.Shell")
}

func TestCallTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := driver(t, exportertest.Session(t, config))
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		err := d.Call(ctx, powerIface, "Cycle", &powerv1.CycleRequest{}, &powerv1.CycleResponse{})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 30*time.Second, time.Since(start))
	})
}

func TestServerStreamEndsWhenClientLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := driver(t, exportertest.Session(t, config))
		ctx, cancel := context.WithCancel(t.Context())
		var states []powerv1.State
		err := client.Stream(ctx, d, powerIface, "Watch", &powerv1.WatchRequest{}, func(s *powerv1.StatusResponse) error {
			states = append(states, s.GetState())
			if len(states) == 2 {
				require.Equal(t, int32(1), device.watchers.Load())
				cancel()
			}
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, []powerv1.State{powerv1.State_STATE_OFF, powerv1.State_STATE_ON}, states)
		synctest.Wait()
		require.Equal(t, int32(0), device.watchers.Load(), "the driver's Watch must end when the client goes")
	})
}

func TestByteStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := driver(t, exportertest.Session(t, config))
		bs, err := d.OpenBytes(t.Context(), serialIface, "Console", &serialv1.ConsoleRequest{})
		require.NoError(t, err)
		// More than one DATA frame each way.
		payload := make([]byte, 3*wire.DataChunkSize+17)
		for i := range payload {
			payload[i] = byte(i)
		}
		go func() {
			bs.Write(payload)
			bs.CloseWrite()
		}()
		got, err := io.ReadAll(bs)
		require.NoError(t, err)
		require.Equal(t, payload, got)
		require.NoError(t, bs.Wait(&serialv1.ConsoleResponse{}))
	})
}

func TestByteStreamClientVanishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := driver(t, exportertest.Session(t, config))
		bs, err := d.OpenBytes(t.Context(), serialIface, "Console", &serialv1.ConsoleRequest{})
		require.NoError(t, err)
		_, err = bs.Write([]byte("hello"))
		require.NoError(t, err)
		buf := make([]byte, 5)
		_, err = io.ReadFull(bs, buf)
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, int32(1), device.consoles.Load())
		require.NoError(t, bs.Close())
		synctest.Wait()
		require.Equal(t, int32(0), device.consoles.Load(), "the console must be freed when its client vanishes")
	})
}

func TestOpenBytesErrors(t *testing.T) {
	d := driver(t, exportertest.Session(t, config))
	_, err := d.OpenBytes(t.Context(), serialIface, "Nope", &serialv1.ConsoleRequest{})
	require.ErrorIs(t, err, &wire.Error{Code: wire.Unimplemented})
}

func TestLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := exportertest.Start(t, config)
		d := driver(t, h.Session)
		require.Error(t, d.Call(t.Context(), powerIface, "Status", &powerv1.StatusRequest{}, &powerv1.StatusResponse{}))
		ctx, cancel := context.WithCancel(t.Context())
		var got []*jumpmeshv1.LogEntry
		err := h.Session.Logs(ctx, jumpmeshv1.Severity_SEVERITY_INFO, func(e *jumpmeshv1.LogEntry) error {
			got = append(got, e)
			cancel()
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Len(t, got, 1)
		require.Contains(t, got[0].GetMessage(), "call failed")
		require.Contains(t, got[0].GetMessage(), "driver=dut.fake")
		require.Contains(t, got[0].GetMessage(), "the PDU does not answer")
	})
}

// TestByteStreamRefusedMidUpload: a driver that stops reading and fails
// while the client is still sending must not deadlock an unbuffered
// transport; the client gets the driver's error.
func TestByteStreamRefusedMidUpload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := driver(t, exportertest.Session(t, config))
		bs, err := d.OpenBytes(t.Context(), "jumpmesh.drivers.storage.v1.Storage", "Write", &storagev1.WriteRequest{})
		require.NoError(t, err)
		_, err = bs.Write(make([]byte, 1<<20))
		require.NoError(t, err, "the exporter discards what it no longer reads")
		err = bs.Wait(&storagev1.WriteResponse{})
		require.ErrorIs(t, err, &wire.Error{Code: wire.DataLoss})
		require.ErrorContains(t, err, "image is corrupt at byte 10")
	})
}
