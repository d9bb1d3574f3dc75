package coordinator

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1/coordinatorv1connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The connect handlers: each unwraps the request, takes the caller from the
// context (the auth interceptor put it there) and calls the coordinator.

func caller(ctx context.Context) Identity {
	id, _ := IdentityFrom(ctx)
	return id
}

func reply[T any](msg *T, err error) (*connect.Response[T], error) {
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(msg), nil
}

type clientAPI struct{ c *Coordinator }

var _ coordinatorv1connect.ClientServiceHandler = clientAPI{}

func (a clientAPI) ListExporters(_ context.Context, req *connect.Request[coordinatorv1.ListExportersRequest]) (*connect.Response[coordinatorv1.ListExportersResponse], error) {
	list, err := a.c.ListExporters(req.Msg.GetSelector())
	return reply(&coordinatorv1.ListExportersResponse{Exporters: list}, err)
}

func (a clientAPI) GetExporter(_ context.Context, req *connect.Request[coordinatorv1.GetExporterRequest]) (*connect.Response[coordinatorv1.Exporter], error) {
	return reply(a.c.GetExporter(req.Msg.GetName()))
}

func (a clientAPI) CreateLease(ctx context.Context, req *connect.Request[coordinatorv1.CreateLeaseRequest]) (*connect.Response[coordinatorv1.Lease], error) {
	return reply(a.c.CreateLease(ctx, caller(ctx), req.Msg))
}

func (a clientAPI) GetLease(ctx context.Context, req *connect.Request[coordinatorv1.GetLeaseRequest]) (*connect.Response[coordinatorv1.Lease], error) {
	return reply(a.c.GetLease(ctx, caller(ctx), req.Msg.GetName()))
}

func (a clientAPI) ListLeases(ctx context.Context, req *connect.Request[coordinatorv1.ListLeasesRequest]) (*connect.Response[coordinatorv1.ListLeasesResponse], error) {
	list, err := a.c.ListLeases(caller(ctx), req.Msg.GetTagSelector(), req.Msg.GetAll())
	return reply(&coordinatorv1.ListLeasesResponse{Leases: list}, err)
}

func (a clientAPI) UpdateLease(ctx context.Context, req *connect.Request[coordinatorv1.UpdateLeaseRequest]) (*connect.Response[coordinatorv1.Lease], error) {
	return reply(a.c.UpdateLease(ctx, caller(ctx), req.Msg))
}

func (a clientAPI) DeleteLease(ctx context.Context, req *connect.Request[coordinatorv1.DeleteLeaseRequest]) (*connect.Response[coordinatorv1.Lease], error) {
	return reply(a.c.DeleteLease(ctx, caller(ctx), req.Msg.GetName()))
}

func (a clientAPI) WatchLease(ctx context.Context, req *connect.Request[coordinatorv1.WatchLeaseRequest], stream *connect.ServerStream[coordinatorv1.Lease]) error {
	return a.c.WatchLease(ctx, caller(ctx), req.Msg.GetName(), stream.Send)
}

func (a clientAPI) Dial(ctx context.Context, req *connect.Request[coordinatorv1.DialRequest]) (*connect.Response[coordinatorv1.DialResponse], error) {
	return reply(a.c.Dial(ctx, caller(ctx), req.Msg.GetLease(), req.Msg.GetPublicKey()))
}

type exporterAPI struct{ c *Coordinator }

var _ coordinatorv1connect.ExporterServiceHandler = exporterAPI{}

func (a exporterAPI) Register(ctx context.Context, req *connect.Request[coordinatorv1.RegisterRequest]) (*connect.Response[coordinatorv1.RegisterResponse], error) {
	e, err := a.c.Register(ctx, caller(ctx).Name, req.Msg.GetReport(), req.Msg.GetPublicKey())
	return reply(&coordinatorv1.RegisterResponse{Exporter: e, HeartbeatInterval: durationpb.New(a.c.HeartbeatInterval()), Relay: a.c.cfg.Relay}, err)
}

func (a exporterAPI) Status(ctx context.Context, stream *connect.BidiStream[coordinatorv1.StatusRequest, coordinatorv1.StatusResponse]) error {
	recv := func() error {
		_, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return err
	}
	return a.c.ServeStatus(ctx, caller(ctx).Name, recv, stream.Send)
}

type adminAPI struct{ c *Coordinator }

var _ coordinatorv1connect.AdminServiceHandler = adminAPI{}

func (a adminAPI) CreateClient(ctx context.Context, req *connect.Request[coordinatorv1.CreateClientRequest]) (*connect.Response[coordinatorv1.CreateClientResponse], error) {
	cl, tok, err := a.c.CreateClient(ctx, req.Msg.GetName(), req.Msg.GetLabels())
	return reply(&coordinatorv1.CreateClientResponse{Client: cl, Token: tok, Endpoint: a.c.cfg.Endpoint}, err)
}

func (a adminAPI) GetClient(_ context.Context, req *connect.Request[coordinatorv1.GetClientRequest]) (*connect.Response[coordinatorv1.Client], error) {
	return reply(a.c.GetClient(req.Msg.GetName()))
}

func (a adminAPI) ListClients(_ context.Context, req *connect.Request[coordinatorv1.ListClientsRequest]) (*connect.Response[coordinatorv1.ListClientsResponse], error) {
	list, err := a.c.ListClients(req.Msg.GetSelector())
	return reply(&coordinatorv1.ListClientsResponse{Clients: list}, err)
}

func (a adminAPI) DeleteClient(ctx context.Context, req *connect.Request[coordinatorv1.DeleteClientRequest]) (*connect.Response[coordinatorv1.DeleteClientResponse], error) {
	return reply(&coordinatorv1.DeleteClientResponse{}, a.c.DeleteClient(ctx, req.Msg.GetName()))
}

func (a adminAPI) CreateExporter(ctx context.Context, req *connect.Request[coordinatorv1.CreateExporterRequest]) (*connect.Response[coordinatorv1.CreateExporterResponse], error) {
	e, tok, err := a.c.CreateExporter(ctx, req.Msg.GetName(), req.Msg.GetLabels())
	return reply(&coordinatorv1.CreateExporterResponse{Exporter: e, Token: tok, Endpoint: a.c.cfg.Endpoint}, err)
}

func (a adminAPI) DeleteExporter(ctx context.Context, req *connect.Request[coordinatorv1.DeleteExporterRequest]) (*connect.Response[coordinatorv1.DeleteExporterResponse], error) {
	return reply(&coordinatorv1.DeleteExporterResponse{}, a.c.DeleteExporter(ctx, req.Msg.GetName()))
}

func (a adminAPI) RotateToken(ctx context.Context, req *connect.Request[coordinatorv1.RotateTokenRequest]) (*connect.Response[coordinatorv1.RotateTokenResponse], error) {
	kind := token.Kind("")
	switch req.Msg.GetKind() {
	case coordinatorv1.IdentityKind_IDENTITY_KIND_CLIENT:
		kind = token.Client
	case coordinatorv1.IdentityKind_IDENTITY_KIND_EXPORTER:
		kind = token.Exporter
	}
	tok, err := a.c.RotateToken(ctx, kind, req.Msg.GetName())
	return reply(&coordinatorv1.RotateTokenResponse{Token: tok, Endpoint: a.c.cfg.Endpoint}, err)
}

func (a adminAPI) ApplyAccessPolicy(ctx context.Context, req *connect.Request[coordinatorv1.ApplyAccessPolicyRequest]) (*connect.Response[coordinatorv1.AccessPolicy], error) {
	return reply(a.c.ApplyPolicy(ctx, req.Msg.GetPolicy()))
}

func (a adminAPI) GetAccessPolicy(_ context.Context, req *connect.Request[coordinatorv1.GetAccessPolicyRequest]) (*connect.Response[coordinatorv1.AccessPolicy], error) {
	return reply(a.c.GetPolicy(req.Msg.GetName()))
}

func (a adminAPI) ListAccessPolicies(context.Context, *connect.Request[coordinatorv1.ListAccessPoliciesRequest]) (*connect.Response[coordinatorv1.ListAccessPoliciesResponse], error) {
	return reply(&coordinatorv1.ListAccessPoliciesResponse{Policies: a.c.ListPolicies()}, nil)
}

func (a adminAPI) DeleteAccessPolicy(ctx context.Context, req *connect.Request[coordinatorv1.DeleteAccessPolicyRequest]) (*connect.Response[coordinatorv1.DeleteAccessPolicyResponse], error) {
	return reply(&coordinatorv1.DeleteAccessPolicyResponse{}, a.c.DeletePolicy(ctx, req.Msg.GetName()))
}

func (a adminAPI) RotateSigningKey(ctx context.Context, _ *connect.Request[coordinatorv1.RotateSigningKeyRequest]) (*connect.Response[coordinatorv1.RotateSigningKeyResponse], error) {
	kid, err := a.c.RotateSigningKey(ctx)
	return reply(&coordinatorv1.RotateSigningKeyResponse{Kid: kid, VerifyingKids: a.c.keys.KeyIDs(), RotateTime: timestamppb.Now()}, err)
}
