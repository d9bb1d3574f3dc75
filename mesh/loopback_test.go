package mesh_test

import (
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/stretchr/testify/require"
)

// TestLoopback runs the mesh on the machine's own UDP and TCP sockets, in
// real time: the sockets quic-go batches and segments (GSO) for, which
// the simulator's do not have. A few megabytes cross each path intact,
// with the relayed packets' headers put into GSO batches.
func TestLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets and real time; -short skips it")
	}
	tests := []struct {
		name   string
		policy mesh.PathPolicy
		path   mesh.Path
		tcp    bool
	}{
		{"direct", mesh.Auto, mesh.PathDirect, false},
		{"relay-udp", mesh.RelayOnly, mesh.PathRelayUDP, false},
		{"relay-tcp", mesh.RelayOnly, mesh.PathRelayTCP, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := meshStreams(t, tt.policy, tt.path, tt.tcp)
			defer p.close()
			data := make([]byte, 4<<20)
			_, err := rand.Read(data)
			require.NoError(t, err)
			sum := make(chan [sha256.Size]byte, 1)
			go func() {
				h := sha256.New()
				io.CopyN(h, p.b, int64(len(data)))
				var s [sha256.Size]byte
				copy(s[:], h.Sum(nil))
				sum <- s
			}()
			_, err = p.a.Write(data)
			require.NoError(t, err)
			require.Equal(t, sha256.Sum256(data), <-sum)
		})
	}
}
