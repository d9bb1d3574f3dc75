package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, MaxFrameSize)
	frames := []Frame{
		{Kind: KindHeader, Payload: []byte{}},
		{Kind: KindMessage, Payload: []byte("hello")},
		{Kind: KindOpen, Payload: []byte{}},
		{Kind: KindData, Payload: big},
		{Kind: KindClose, Payload: []byte{8, 5}},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, f := range frames {
		require.NoError(t, w.Write(f.Kind, f.Payload))
	}
	r := NewReader(&buf)
	for _, want := range frames {
		got, err := r.Read()
		require.NoError(t, err)
		require.Equal(t, want.Kind, got.Kind)
		require.True(t, bytes.Equal(want.Payload, got.Payload), "payload of %v frame", want.Kind)
	}
	_, err := r.Read()
	require.ErrorIs(t, err, io.EOF)
}

// TestReadAcrossBuffer reads frames around the read buffer's size, from
// a stream that yields a byte at a time: payloads that fit are returned in
// place, the others read on their own, and neither may lose a byte.
func TestReadAcrossBuffer(t *testing.T) {
	var frames []Frame
	for i, n := range []int{0, 1, readBufferSize - 2, readBufferSize - 1, readBufferSize, readBufferSize + 1, 3 * readBufferSize, 7} {
		frames = append(frames, Frame{Kind: KindData, Payload: bytes.Repeat([]byte{byte(i + 1)}, n)})
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, f := range frames {
		require.NoError(t, w.Write(f.Kind, f.Payload))
	}
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(buf.Bytes())},
		{"byte at a time", iotest.OneByteReader(bytes.NewReader(buf.Bytes()))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.r)
			for _, want := range frames {
				got, err := r.Read()
				require.NoError(t, err)
				require.Equal(t, len(want.Payload), len(got.Payload))
				require.True(t, bytes.Equal(want.Payload, got.Payload), "payload of %d bytes", len(want.Payload))
			}
			_, err := r.Read()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

// writes records each Write call.
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, bytes.Clone(p))
	return len(p), nil
}

// TestHeldFramesShareAWrite: frames added before a write go out with it,
// in one write to the stream, and in order.
func TestHeldFramesShareAWrite(t *testing.T) {
	hdr := &jumpmeshv1.StreamHeader{Op: &jumpmeshv1.StreamHeader_Report{Report: &jumpmeshv1.ReportRequest{}}}
	tests := []struct {
		name  string
		write func(w *Writer) error
		want  []Kind
	}{
		{"request", func(w *Writer) error {
			require.NoError(t, w.AddMessage(KindHeader, hdr))
			require.NoError(t, w.AddClose(nil))
			return w.Flush()
		}, []Kind{KindHeader, KindClose}},
		{"answer", func(w *Writer) error {
			require.NoError(t, w.AddMessage(KindMessage, hdr))
			return w.WriteMessage(KindClose, StatusOf(nil))
		}, []Kind{KindMessage, KindClose}},
		{"failure", func(w *Writer) error {
			require.NoError(t, w.AddClose(Errorf(NotFound, "no driver")))
			return w.Flush()
		}, []Kind{KindClose}},
		{"data after a held frame", func(w *Writer) error {
			require.NoError(t, w.AddMessage(KindHeader, hdr))
			return w.Write(KindData, []byte("boot"))
		}, []Kind{KindHeader, KindData}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out writes
			w := NewWriter(&out)
			require.NoError(t, tt.write(w))
			require.Len(t, out, 1, "one write to the stream")
			r := NewReader(bytes.NewReader(out[0]))
			for _, k := range tt.want {
				f, err := r.Read()
				require.NoError(t, err)
				require.Equal(t, k, f.Kind)
			}
			_, err := r.Read()
			require.ErrorIs(t, err, io.EOF)
			require.NoError(t, w.Flush())
			require.Len(t, out, 2)
			require.Empty(t, out[1], "a write sends the held frames once")
		})
	}
}

// TestAddMessageTooLarge: a message over the limit is refused and leaves
// the frames held before it as they were.
func TestAddMessageTooLarge(t *testing.T) {
	var out writes
	w := NewWriter(&out)
	require.NoError(t, w.AddClose(nil))
	big := &jumpmeshv1.LogEntry{Message: string(bytes.Repeat([]byte{'x'}, MaxFrameSize))}
	require.ErrorIs(t, w.AddMessage(KindMessage, big), ErrFrameTooLarge)
	require.NoError(t, w.Flush())
	f, err := NewReader(bytes.NewReader(out[0])).Read()
	require.NoError(t, err)
	require.Equal(t, KindClose, f.Kind)
	require.NoError(t, ErrorOf(f.Payload))
}

func TestFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"unknown kind", []byte{9, 0}, ErrMalformed},
		{"zero kind", []byte{0, 0}, ErrMalformed},
		{"too large", []byte{byte(KindData), 0x81, 0x80, 0x80, 0x04}, ErrFrameTooLarge},
		{"cut in length", []byte{byte(KindData), 0x80}, io.ErrUnexpectedEOF},
		{"cut in payload", []byte{byte(KindData), 5, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"varint overflow", []byte{byte(KindData), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.input)).Read()
			require.Error(t, err)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
			}
		})
	}
	require.ErrorIs(t, NewWriter(io.Discard).Write(KindData, make([]byte, MaxFrameSize+1)), ErrFrameTooLarge)
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, OK},
		{"coded", Errorf(NotFound, "no driver %q", "x"), NotFound},
		{"wrapped", errors.Join(errors.New("context"), Errorf(DataLoss, "corrupt")), DataLoss},
		{"plain", errors.New("x"), Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := StatusOf(tt.err)
			require.Equal(t, tt.want, st.GetCode())
			b, err := proto.Marshal(st)
			require.NoError(t, err)
			back := ErrorOf(b)
			if tt.want == OK {
				require.NoError(t, back)
				return
			}
			require.ErrorIs(t, back, &Error{Code: tt.want})
			require.Equal(t, tt.err.Error(), back.Error())
		})
	}
	require.ErrorIs(t, ErrorOf([]byte{0xff}), ErrMalformed)
	require.NoError(t, ErrorOf(nil), "an empty CLOSE is CODE_OK")

	// Protobuf strings must be UTF-8: a message quoting raw bytes still
	// crosses, its bad bytes replaced.
	b, err := proto.Marshal(StatusOf(Errorf(DataLoss, "read \xff\xfe from the flash")))
	require.NoError(t, err)
	back := ErrorOf(b)
	require.ErrorIs(t, back, &Error{Code: DataLoss})
	require.Equal(t, "read \uFFFD from the flash", back.Error())
}

// FuzzReader feeds arbitrary bytes to the frame reader: it must never
// panic, never return a frame over the limit, and frames it accepts must
// encode back to the same bytes.
func FuzzReader(f *testing.F) {
	var seed bytes.Buffer
	w := NewWriter(&seed)
	hdr, _ := proto.Marshal(&jumpmeshv1.StreamHeader{Op: &jumpmeshv1.StreamHeader_Report{Report: &jumpmeshv1.ReportRequest{}}})
	w.Write(KindHeader, hdr)
	w.Write(KindData, []byte("console bytes"))
	w.WriteMessage(KindClose, StatusOf(Errorf(NotFound, "gone")))
	f.Add(seed.Bytes())
	f.Add([]byte{byte(KindOpen), 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		var out bytes.Buffer
		w := NewWriter(&out)
		for {
			fr, err := r.Read()
			if err != nil {
				break
			}
			if len(fr.Payload) > MaxFrameSize {
				t.Fatalf("frame of %d bytes passed the limit", len(fr.Payload))
			}
			if err := w.Write(fr.Kind, fr.Payload); err != nil {
				t.Fatal(err)
			}
			if fr.Kind == KindClose {
				ErrorOf(fr.Payload) // must not panic on any payload
			}
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			// Varints have one shortest form; a longer one in the input is
			// legal to read but encodes differently. Check by re-reading.
			r2 := NewReader(bytes.NewReader(out.Bytes()))
			for {
				if _, err := r2.Read(); err != nil {
					require.ErrorIs(t, err, io.EOF)
					break
				}
			}
		}
	})
}
