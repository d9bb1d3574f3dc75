package client_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/jumpmesh/jumpmesh/client"
	powerv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/power/v1"
	serialv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/drivers/serial/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

const powerIface = "jumpmesh.drivers.power.v1.Power"

// scripted is an exporter that answers every stream at once: the report
// for a report, OPEN for a byte stream, an empty response for a call. It
// records each stream's writes from the client.
type scripted struct {
	mu      sync.Mutex
	streams []*scriptedStream
}

type scriptedStream struct {
	writes [][]byte
	answer bytes.Buffer
}

func (s *scripted) OpenStream(context.Context) (wire.Stream, error) {
	st := &scriptedStream{}
	s.mu.Lock()
	s.streams = append(s.streams, st)
	s.mu.Unlock()
	return st, nil
}

// last is the latest stream's writes.
func (s *scripted) last() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[len(s.streams)-1].writes
}

func (st *scriptedStream) Write(p []byte) (int, error) {
	st.writes = append(st.writes, bytes.Clone(p))
	if len(st.writes) > 1 {
		return len(p), nil
	}
	f, err := wire.NewReader(bytes.NewReader(p)).Read()
	if err != nil {
		return 0, err
	}
	var h jumpmeshv1.StreamHeader
	if err := proto.Unmarshal(f.Payload, &h); err != nil {
		return 0, err
	}
	w := wire.NewWriter(&st.answer)
	switch {
	case h.GetReport() != nil:
		err = w.AddMessage(wire.KindMessage, &jumpmeshv1.Report{Name: "board", Drivers: []*jumpmeshv1.DriverReport{{Uuid: "u1", Name: "power"}}})
	case h.GetCall().GetMethod() == "Console":
		return len(p), w.Write(wire.KindOpen, nil)
	default:
		err = w.AddMessage(wire.KindMessage, &powerv1.OnResponse{})
	}
	if err == nil {
		err = w.AddClose(nil)
	}
	if err == nil {
		err = w.Flush()
	}
	return len(p), err
}

func (st *scriptedStream) Read(p []byte) (int, error) {
	if st.answer.Len() == 0 {
		return 0, io.EOF
	}
	return st.answer.Read(p)
}

func (st *scriptedStream) Close() error { return nil }

// kinds decodes the frames of one write.
func kinds(t *testing.T, b []byte) []wire.Kind {
	var k []wire.Kind
	r := wire.NewReader(bytes.NewReader(b))
	for {
		f, err := r.Read()
		if err == io.EOF {
			return k
		}
		require.NoError(t, err)
		k = append(k, f.Kind)
	}
}

// TestRequestIsOneWrite: an operation whose request is all the client
// sends goes out as its header and CLOSE in one write, one packet on QUIC;
// a byte stream's header goes alone, for the exporter to open the stream.
func TestRequestIsOneWrite(t *testing.T) {
	ex := &scripted{}
	s := client.New(ex)
	d, err := s.Driver(t.Context(), "power")
	require.NoError(t, err)
	require.Len(t, ex.last(), 1, "the report's request")
	require.Equal(t, []wire.Kind{wire.KindHeader, wire.KindClose}, kinds(t, ex.last()[0]))

	tests := []struct {
		name string
		do   func() error
		want []wire.Kind
	}{
		{"call", func() error {
			return d.Call(t.Context(), powerIface, "On", &powerv1.OnRequest{}, &powerv1.OnResponse{})
		}, []wire.Kind{wire.KindHeader, wire.KindClose}},
		{"server stream", func() error {
			return client.Stream(t.Context(), d, powerIface, "Watch", &powerv1.WatchRequest{}, func(*powerv1.StatusResponse) error { return nil })
		}, []wire.Kind{wire.KindHeader, wire.KindClose}},
		{"byte stream", func() error {
			bs, err := d.OpenBytes(t.Context(), "jumpmesh.drivers.serial.v1.Serial", "Console", &serialv1.ConsoleRequest{})
			if err != nil {
				return err
			}
			return bs.Close()
		}, []wire.Kind{wire.KindHeader}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tt.do())
			require.Len(t, ex.last(), 1)
			require.Equal(t, tt.want, kinds(t, ex.last()[0]))
		})
	}
}
