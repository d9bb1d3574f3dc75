package coordinator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1/coordinatorv1connect"
	"github.com/stretchr/testify/require"
)

func serve(t *testing.T, h *harness) (*httptest.Server, *http.Client) {
	srv := httptest.NewUnstartedServer(h.c.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, srv.Client()
}

// TestProtocols calls the API with each protocol connect serves.
func TestProtocols(t *testing.T) {
	h := newHarness(t, testConfig)
	defer h.stop()
	_, tok, err := h.c.CreateClient(context.Background(), "alice", nil)
	require.NoError(t, err)
	h.exporter("e1", rpi4)
	srv, hc := serve(t, h)

	for name, opt := range map[string]connect.ClientOption{
		"connect":  connect.WithProtoJSON(),
		"grpc":     connect.WithGRPC(),
		"grpc-web": connect.WithGRPCWeb(),
	} {
		t.Run(name, func(t *testing.T) {
			cl := coordinatorv1connect.NewClientServiceClient(hc, srv.URL, opt)
			req := connect.NewRequest(&coordinatorv1.ListExportersRequest{})
			req.Header().Set("Authorization", "Bearer "+tok)
			resp, err := cl.ListExporters(context.Background(), req)
			require.NoError(t, err)
			require.Len(t, resp.Msg.GetExporters(), 1)

			// No token: a clear refusal, in every protocol.
			_, err = cl.ListExporters(context.Background(), connect.NewRequest(&coordinatorv1.ListExportersRequest{}))
			require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
		})
	}
}

func TestSideEndpoints(t *testing.T) {
	h := newHarness(t, testConfig)
	defer h.stop()
	srv, hc := serve(t, h)
	get := func(path string) string {
		resp, err := hc.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body)
	}
	require.Equal(t, "ok\n", get(HealthPath))

	// The JWKS verifies what the coordinator signs.
	keys, err := token.ParseJWKS([]byte(get(JWKSPath)))
	require.NoError(t, err)
	_, tok, err := h.c.CreateClient(context.Background(), "alice", nil)
	require.NoError(t, err)
	v := &token.Verifier{Issuer: h.c.Issuer(), Keys: keys}
	claims, err := v.Verify(tok, token.Client, token.CoordinatorAudience, time.Now())
	require.NoError(t, err)
	require.Equal(t, "alice", claims.Subject)

	metrics := get(MetricsPath)
	for _, m := range []string{"jumpmesh_coordinator_leases", "jumpmesh_coordinator_exporters", "jumpmesh_coordinator_lease_wait_seconds", "go_goroutines"} {
		require.True(t, strings.Contains(metrics, m), "metrics lack %s", m)
	}
}

// panickingStore panics on every update, as a bug in a store would.
type panickingStore struct{ store.Store }

func (panickingStore) Update(context.Context, store.Object) error { panic("store bug") }

// TestPanicIsLoggedAndAnswered: a call that panics gets an internal error
// naming it, and the log says what happened, at error level.
func TestPanicIsLoggedAndAnswered(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	logs := &lockedBuffer{}
	cfg := testConfig
	cfg.Store, cfg.Logger = panickingStore{st}, slog.New(slog.NewTextHandler(logs, nil))
	c, err := New(context.Background(), cfg)
	require.NoError(t, err)
	defer c.Close()
	h := &harness{t: t, st: st, c: c}
	_, tok, err := c.CreateExporter(context.Background(), "e1", nil)
	require.NoError(t, err)
	srv, hc := serve(t, h)

	cl := coordinatorv1connect.NewExporterServiceClient(hc, srv.URL)
	req := connect.NewRequest(&coordinatorv1.RegisterRequest{})
	req.Header().Set("Authorization", "Bearer "+tok)
	_, err = cl.Register(context.Background(), req)
	require.Equal(t, connect.CodeInternal, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "failed serving /jumpmesh.coordinator.v1.ExporterService/Register")
	require.Contains(t, logs.String(), "level=ERROR")
	require.Contains(t, logs.String(), "store bug")
}

// lockedBuffer is a log the coordinator's goroutines write while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
