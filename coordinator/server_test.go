package coordinator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
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
