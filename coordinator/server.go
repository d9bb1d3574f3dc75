package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	"github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1/coordinatorv1connect"
)

// compressMinBytes: only lists of many resources are worth compressing.
const compressMinBytes = 4096

// Paths served beside the API.
const (
	HealthPath  = "/healthz"
	JWKSPath    = token.JWKSPath
	MetricsPath = "/metrics"
)

// Handler serves the API (Connect, gRPC and gRPC-Web), the health check,
// the JWKS and the metrics.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	opts := connect.WithHandlerOptions(
		connect.WithRecover(c.recovered),
		connect.WithInterceptors(metricsInterceptor{c.m}, authInterceptor{c}),
		// Most messages are a few hundred bytes: compressing them costs
		// more CPU than it saves on the wire.
		connect.WithCompressMinBytes(compressMinBytes),
	)
	mux.Handle(coordinatorv1connect.NewClientServiceHandler(clientAPI{c}, opts))
	mux.Handle(coordinatorv1connect.NewExporterServiceHandler(exporterAPI{c}, opts))
	mux.Handle(coordinatorv1connect.NewAdminServiceHandler(adminAPI{c}, opts))
	mux.HandleFunc("GET "+HealthPath, c.serveHealth)
	mux.HandleFunc("GET "+JWKSPath, c.serveJWKS)
	mux.Handle("GET "+MetricsPath, c.m.Handler())
	return mux
}

// recovered logs a call's panic, which net/http would log only at debug
// level (with its TLS handshake noise), and answers it.
func (c *Coordinator) recovered(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
	c.log.Error("panic serving a call; please report it", "procedure", spec.Procedure, "panic", p, "stack", string(debug.Stack()))
	return connect.NewError(connect.CodeInternal, fmt.Errorf("the coordinator failed serving %s; its log has the details", spec.Procedure))
}

// serveHealth answers 200 when the store answers reads.
func (c *Coordinator) serveHealth(w http.ResponseWriter, r *http.Request) {
	if _, err := c.st.Get(r.Context(), store.Admins, AdminName); err != nil && !isNotFound(err) {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

func (c *Coordinator) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	data, err := c.JWKS()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(data)
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
