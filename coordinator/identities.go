package coordinator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// AdminName is the admin identity made on first start.
const AdminName = "admin"

// BootstrapAdmin makes the first admin when there is none and returns its
// token; created is false when an admin already exists.
func (c *Coordinator) BootstrapAdmin(ctx context.Context) (tok string, created bool, err error) {
	c.cache.mu.RLock()
	n := len(c.cache.admins)
	c.cache.mu.RUnlock()
	if n > 0 {
		return "", false, nil
	}
	id := newTokenID()
	a := &coordinatorv1.Admin{Metadata: newMeta(AdminName, nil, time.Now()), TokenId: id}
	if err := c.create(ctx, a); errors.Is(err, store.ErrExists) {
		return "", false, nil
	} else if err != nil {
		return "", false, fmt.Errorf("create admin: %w", err)
	}
	tok, err = c.issue(token.Admin, AdminName, id)
	return tok, true, err
}

func newTokenID() string { return randomName() + randomName() }

// CreateClient makes a client identity and returns its token.
func (c *Coordinator) CreateClient(ctx context.Context, name string, lbls map[string]string) (*coordinatorv1.Client, string, error) {
	if err := checkName("client", name); err != nil {
		return nil, "", err
	}
	if err := checkLabels("label", lbls); err != nil {
		return nil, "", err
	}
	if c.cache.get(store.Admins, name) != nil {
		return nil, "", connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s is an admin's name; pick another", name))
	}
	id := newTokenID()
	cl := &coordinatorv1.Client{Metadata: newMeta(name, lbls, time.Now()), TokenId: id}
	if err := c.create(ctx, cl); errors.Is(err, store.ErrExists) {
		return nil, "", connect.NewError(connect.CodeAlreadyExists,
			fmt.Errorf("client %s exists; delete it first or issue a new token with `jmp admin create client %s --rotate`", name, name))
	} else if err != nil {
		return nil, "", asConnect("create client", err)
	}
	tok, err := c.issue(token.Client, name, id)
	if err != nil {
		return nil, "", asConnect("sign client token", err)
	}
	return redactClient(cl), tok, nil
}

// DeleteClient deletes a client, which revokes its token, and ends its
// leases.
func (c *Coordinator) DeleteClient(ctx context.Context, name string) error {
	cl, _ := c.cache.get(store.Clients, name).(*coordinatorv1.Client)
	if cl == nil {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("client %s not found; see `jmp admin get clients`", name))
	}
	if err := c.remove(ctx, cl); err != nil {
		return asConnect("delete client", err)
	}
	c.cache.mu.RLock()
	var held []string
	for n, e := range c.cache.leases {
		if e.obj.GetSpec().GetClient() == name && e.obj.GetStatus().GetState() != coordinatorv1.LeaseState_LEASE_STATE_ENDED {
			held = append(held, n)
		}
	}
	c.cache.mu.RUnlock()
	for _, l := range held {
		if err := c.endLease(ctx, l, coordinatorv1.LeaseReason_LEASE_REASON_CLIENT_DELETED, "client "+name+" was deleted"); err != nil {
			return asConnect("end the deleted client's leases", err)
		}
	}
	return nil
}

// ListClients lists clients whose labels match selector.
func (c *Coordinator) ListClients(selector string) ([]*coordinatorv1.Client, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, invalid(fmt.Sprintf("selector %q does not parse: %v", selector, err))
	}
	c.cache.mu.RLock()
	var out []*coordinatorv1.Client
	for _, cl := range c.cache.clients {
		if sel.Matches(labels.Set(cl.GetMetadata().GetLabels())) {
			out = append(out, redactClient(cl))
		}
	}
	c.cache.mu.RUnlock()
	slices.SortFunc(out, func(a, b *coordinatorv1.Client) int {
		return strings.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName())
	})
	return out, nil
}

// GetClient returns a client.
func (c *Coordinator) GetClient(name string) (*coordinatorv1.Client, error) {
	cl, _ := c.cache.get(store.Clients, name).(*coordinatorv1.Client)
	if cl == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("client %s not found; see `jmp admin get clients`", name))
	}
	return redactClient(cl), nil
}

// CreateExporter makes an exporter identity and returns its token.
func (c *Coordinator) CreateExporter(ctx context.Context, name string, lbls map[string]string) (*coordinatorv1.Exporter, string, error) {
	if err := checkName("exporter", name); err != nil {
		return nil, "", err
	}
	if err := checkLabels("label", lbls); err != nil {
		return nil, "", err
	}
	now := time.Now()
	id := newTokenID()
	e := &coordinatorv1.Exporter{Metadata: newMeta(name, lbls, now), TokenId: id, LastSeen: timestamp(now)}
	if err := c.create(ctx, e); errors.Is(err, store.ErrExists) {
		return nil, "", connect.NewError(connect.CodeAlreadyExists,
			fmt.Errorf("exporter %s exists; delete it first or issue a new token with `jmp admin create exporter %s --rotate`", name, name))
	} else if err != nil {
		return nil, "", asConnect("create exporter", err)
	}
	tok, err := c.issue(token.Exporter, name, id)
	if err != nil {
		return nil, "", asConnect("sign exporter token", err)
	}
	return presentExporter(e), tok, nil
}

// DeleteExporter deletes an exporter, which revokes its token and closes
// its status stream; its lease ends (reason exporter deleted).
func (c *Coordinator) DeleteExporter(ctx context.Context, name string) error {
	e := c.cache.exporter(name)
	if e == nil {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("exporter %s not found; see `jmp get exporters`", name))
	}
	if err := c.remove(ctx, e); err != nil {
		return asConnect("delete exporter", err)
	}
	return nil
}

// RotateToken issues a new token for a client or exporter; the old one
// stops working at once.
func (c *Coordinator) RotateToken(ctx context.Context, kind token.Kind, name string) (string, error) {
	id := newTokenID()
	var err error
	switch kind {
	case token.Client:
		_, err = update(ctx, c, store.Clients, name, func(cl *coordinatorv1.Client) error {
			cl.TokenId = id
			return nil
		})
	case token.Exporter:
		_, err = update(ctx, c, store.Exporters, name, func(e *coordinatorv1.Exporter) error {
			e.TokenId = id
			return nil
		})
	default:
		return "", invalid("only client and exporter tokens rotate")
	}
	if errors.Is(err, store.ErrNotFound) {
		return "", connect.NewError(connect.CodeNotFound, fmt.Errorf("%s %s not found", kind, name))
	}
	if err != nil {
		return "", asConnect("rotate token", err)
	}
	tok, err := c.issue(kind, name, id)
	if err != nil {
		return "", asConnect("sign token", err)
	}
	return tok, nil
}

// ApplyPolicy creates or replaces an access policy.
func (c *Coordinator) ApplyPolicy(ctx context.Context, p *coordinatorv1.AccessPolicy) (*coordinatorv1.AccessPolicy, error) {
	name := p.GetMetadata().GetName()
	if err := checkName("policy", name); err != nil {
		return nil, err
	}
	if err := checkLabels("label", p.GetMetadata().GetLabels()); err != nil {
		return nil, err
	}
	if _, err := parsePolicy(p); err != nil {
		return nil, invalid(fmt.Sprintf("policy %s: %v", name, err))
	}
	if len(p.GetRules()) == 0 {
		return nil, invalid(fmt.Sprintf("policy %s has no rules; it would lock everyone out of its exporters", name))
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if cur, _ := c.cache.get(store.Policies, name).(*coordinatorv1.AccessPolicy); cur != nil {
			out, err := update(ctx, c, store.Policies, name, func(q *coordinatorv1.AccessPolicy) error {
				q.Metadata.Labels = p.GetMetadata().GetLabels()
				q.ExporterSelector = p.GetExporterSelector()
				q.Rules = p.GetRules()
				return nil
			})
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return out, asConnectOrNil("update policy", err)
		}
		q := &coordinatorv1.AccessPolicy{
			Metadata:         newMeta(name, p.GetMetadata().GetLabels(), time.Now()),
			ExporterSelector: p.GetExporterSelector(),
			Rules:            p.GetRules(),
		}
		err := c.create(ctx, q)
		if errors.Is(err, store.ErrExists) {
			// Created meanwhile: wait for the cache to have it, then update.
			if got, gerr := c.st.Get(ctx, store.Policies, name); gerr == nil {
				c.cache.put(got)
			}
			continue
		}
		return q, asConnectOrNil("create policy", err)
	}
	return nil, connect.NewError(connect.CodeAborted, fmt.Errorf("policy %s kept changing; try again", name))
}

func asConnectOrNil(what string, err error) error {
	if err == nil {
		return nil
	}
	return asConnect(what, err)
}

// GetPolicy returns a policy.
func (c *Coordinator) GetPolicy(name string) (*coordinatorv1.AccessPolicy, error) {
	p, _ := c.cache.get(store.Policies, name).(*coordinatorv1.AccessPolicy)
	if p == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("policy %s not found; see `jmp admin get policies`", name))
	}
	return p, nil
}

// ListPolicies lists the policies by name.
func (c *Coordinator) ListPolicies() []*coordinatorv1.AccessPolicy {
	c.cache.mu.RLock()
	defer c.cache.mu.RUnlock()
	out := make([]*coordinatorv1.AccessPolicy, 0, len(c.cache.policies))
	for _, name := range slices.Sorted(maps.Keys(c.cache.policies)) {
		out = append(out, c.cache.policies[name].obj)
	}
	return out
}

// DeletePolicy deletes a policy.
func (c *Coordinator) DeletePolicy(ctx context.Context, name string) error {
	p, err := c.GetPolicy(name)
	if err != nil {
		return err
	}
	return asConnectOrNil("delete policy", c.remove(ctx, p))
}

func redactClient(cl *coordinatorv1.Client) *coordinatorv1.Client {
	out := cloneObject(cl).(*coordinatorv1.Client)
	out.TokenId = ""
	return out
}

// presentExporter is an exporter as callers see it: its status derived,
// bookkeeping left out.
func presentExporter(e *coordinatorv1.Exporter) *coordinatorv1.Exporter {
	out := cloneObject(e).(*coordinatorv1.Exporter)
	out.TokenId, out.SessionId = "", ""
	out.Status = exporterStatus(e)
	return out
}

func exporterStatus(e *coordinatorv1.Exporter) coordinatorv1.ExporterStatus {
	switch {
	case e.GetOnline() && e.GetLease() != "":
		return coordinatorv1.ExporterStatus_EXPORTER_STATUS_LEASED
	case e.GetOnline():
		return coordinatorv1.ExporterStatus_EXPORTER_STATUS_AVAILABLE
	case e.GetLease() != "":
		return coordinatorv1.ExporterStatus_EXPORTER_STATUS_LOST
	}
	return coordinatorv1.ExporterStatus_EXPORTER_STATUS_OFFLINE
}

// statusText is a status for people: "available" for AVAILABLE.
func statusText(s coordinatorv1.ExporterStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "EXPORTER_STATUS_"))
}

// ListExporters lists exporters whose labels match selector, by name.
func (c *Coordinator) ListExporters(selector string) ([]*coordinatorv1.Exporter, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, invalid(fmt.Sprintf("selector %q does not parse: %v; write it as in kubectl, e.g. board=rpi4,env!=prod", selector, err))
	}
	c.cache.mu.RLock()
	var out []*coordinatorv1.Exporter
	for _, e := range c.cache.exporters {
		if sel.Matches(labels.Set(e.GetMetadata().GetLabels())) {
			out = append(out, e)
		}
	}
	c.cache.mu.RUnlock()
	slices.SortFunc(out, func(a, b *coordinatorv1.Exporter) int {
		return strings.Compare(a.GetMetadata().GetName(), b.GetMetadata().GetName())
	})
	for i, e := range out {
		out[i] = presentExporter(e)
	}
	return out, nil
}

// GetExporter returns an exporter.
func (c *Coordinator) GetExporter(name string) (*coordinatorv1.Exporter, error) {
	e := c.cache.exporter(name)
	if e == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("exporter %s not found; see `jmp get exporters`", name))
	}
	return presentExporter(e), nil
}
