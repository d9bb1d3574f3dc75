package kubestore

import (
	"fmt"
	"reflect"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/kubestore/api/v1alpha1"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	corev1 "k8s.io/api/core/v1"
)

// exporterCodec keeps an Exporter's labels in metadata and everything the
// coordinator tracks in status.
type exporterCodec struct{}

func (exporterCodec) newObject() *v1alpha1.Exporter { return &v1alpha1.Exporter{} }

func (exporterCodec) decode(o *v1alpha1.Exporter) (store.Object, error) {
	st := o.Status
	report, err := decodeReport(st.Report)
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.Exporter{
		Report:    report,
		PublicKey: st.PublicKey,
		LastSeen:  fromTime(st.LastSeen),
		Lease:     st.Lease,
		Online:    st.Online,
		SessionId: st.SessionID,
		TokenId:   st.TokenID,
	}, nil
}

func (exporterCodec) encode(rec store.Object, o *v1alpha1.Exporter) {
	e := rec.(*coordinatorv1.Exporter)
	st := &o.Status
	st.Online, st.Lease, st.LastSeen = e.GetOnline(), e.GetLease(), toTime(e.GetLastSeen())
	st.SessionID, st.TokenID, st.PublicKey = e.GetSessionId(), e.GetTokenId(), e.GetPublicKey()
	st.Report = encodeReport(e.GetReport())
	st.Phase = exporterPhase(e.GetOnline(), e.GetLease())
}

func (exporterCodec) spec(*v1alpha1.Exporter) any           { return nil }
func (exporterCodec) status(o *v1alpha1.Exporter) any       { return o.Status }
func (exporterCodec) setStatus(dst, src *v1alpha1.Exporter) { dst.Status = *src.Status.DeepCopy() }

// exporterPhase is the coordinator's exporter status, for kubectl's
// Status column.
func exporterPhase(online bool, lease string) v1alpha1.ExporterPhase {
	switch {
	case online && lease != "":
		return v1alpha1.ExporterLeased
	case online:
		return v1alpha1.ExporterAvailable
	case lease != "":
		return v1alpha1.ExporterLost
	}
	return v1alpha1.ExporterOffline
}

func encodeReport(r *jumpmeshv1.Report) *v1alpha1.Report {
	if r == nil {
		return nil
	}
	out := &v1alpha1.Report{Name: r.GetName(), Labels: r.GetLabels(), DriverCount: int32(len(r.GetDrivers()))}
	for _, d := range r.GetDrivers() {
		drv := v1alpha1.Driver{UUID: d.GetUuid(), ParentUUID: d.GetParentUuid(), Name: d.GetName(), Type: d.GetType(),
			Labels: d.GetLabels(), Description: d.GetDescription()}
		for _, i := range d.GetInterfaces() {
			iface := v1alpha1.Interface{Name: i.GetName(), Description: i.GetDescription()}
			for _, m := range i.GetMethods() {
				iface.Methods = append(iface.Methods, v1alpha1.Method{Name: m.GetName(), Description: m.GetDescription(),
					Kind: v1alpha1.MethodKind(enumText(m.GetKind())), RequestType: m.GetRequestType(), ResponseType: m.GetResponseType()})
			}
			drv.Interfaces = append(drv.Interfaces, iface)
		}
		out.Drivers = append(out.Drivers, drv)
	}
	return out
}

func decodeReport(r *v1alpha1.Report) (*jumpmeshv1.Report, error) {
	if r == nil {
		return nil, nil
	}
	out := &jumpmeshv1.Report{Name: r.Name, Labels: r.Labels}
	for _, d := range r.Drivers {
		drv := &jumpmeshv1.DriverReport{Uuid: d.UUID, ParentUuid: d.ParentUUID, Name: d.Name, Type: d.Type,
			Labels: d.Labels, Description: d.Description}
		for _, i := range d.Interfaces {
			iface := &jumpmeshv1.InterfaceReport{Name: i.Name, Description: i.Description}
			for _, m := range i.Methods {
				kind, err := parseEnum(jumpmeshv1.MethodKind(0).Descriptor(), string(m.Kind))
				if err != nil {
					return nil, fmt.Errorf("driver %s method %s: %w", d.Name, m.Name, err)
				}
				iface.Methods = append(iface.Methods, &jumpmeshv1.MethodReport{Name: m.Name, Description: m.Description,
					Kind: jumpmeshv1.MethodKind(kind), RequestType: m.RequestType, ResponseType: m.ResponseType})
			}
			drv.Interfaces = append(drv.Interfaces, iface)
		}
		out.Drivers = append(out.Drivers, drv)
	}
	return out, nil
}

// identityCodec serves Client and Admin, which differ only in kind.
type identityCodec[T object] struct {
	new      func() T
	statusOf func(T) *v1alpha1.IdentityStatus
	record   func(tokenID string) store.Object
	tokenID  func(store.Object) string
}

var clientCodec = identityCodec[*v1alpha1.Client]{
	new:      func() *v1alpha1.Client { return &v1alpha1.Client{} },
	statusOf: func(o *v1alpha1.Client) *v1alpha1.IdentityStatus { return &o.Status },
	record:   func(id string) store.Object { return &coordinatorv1.Client{TokenId: id} },
	tokenID:  func(r store.Object) string { return r.(*coordinatorv1.Client).GetTokenId() },
}

var adminCodec = identityCodec[*v1alpha1.Admin]{
	new:      func() *v1alpha1.Admin { return &v1alpha1.Admin{} },
	statusOf: func(o *v1alpha1.Admin) *v1alpha1.IdentityStatus { return &o.Status },
	record:   func(id string) store.Object { return &coordinatorv1.Admin{TokenId: id} },
	tokenID:  func(r store.Object) string { return r.(*coordinatorv1.Admin).GetTokenId() },
}

func (c identityCodec[T]) newObject() T { return c.new() }
func (c identityCodec[T]) decode(o T) (store.Object, error) {
	return c.record(c.statusOf(o).TokenID), nil
}
func (c identityCodec[T]) encode(rec store.Object, o T) { c.statusOf(o).TokenID = c.tokenID(rec) }
func (c identityCodec[T]) spec(T) any                   { return nil }
func (c identityCodec[T]) status(o T) any               { return *c.statusOf(o) }
func (c identityCodec[T]) setStatus(dst, src T)         { *c.statusOf(dst) = *c.statusOf(src) }

// leaseCodec keeps what the client asked for in spec and the scheduler's
// progress in status.
type leaseCodec struct{}

func (leaseCodec) newObject() *v1alpha1.Lease { return &v1alpha1.Lease{} }

func (leaseCodec) decode(o *v1alpha1.Lease) (store.Object, error) {
	state, err := parseEnum(coordinatorv1.LeaseState(0).Descriptor(), string(o.Status.State))
	if err != nil {
		return nil, err
	}
	reason, err := parseEnum(coordinatorv1.LeaseReason(0).Descriptor(), string(o.Status.Reason))
	if err != nil {
		return nil, err
	}
	sp, st := o.Spec, o.Status
	l := &coordinatorv1.Lease{
		Spec: &coordinatorv1.LeaseSpec{
			Client: sp.Client, Selector: sp.Selector, Exporter: sp.Exporter, Duration: fromDuration(sp.Duration),
			BeginTime: fromTime(sp.BeginTime), EndTime: fromTime(sp.EndTime), Tags: sp.Tags,
		},
	}
	// A lease made with kubectl has no status until the coordinator gives
	// it one; the record then has none either.
	if !reflect.DeepEqual(st, v1alpha1.LeaseStatus{}) {
		l.Status = &coordinatorv1.LeaseStatus{
			State: coordinatorv1.LeaseState(state), Reason: coordinatorv1.LeaseReason(reason), Message: st.Message,
			Exporter: st.Exporter, BeginTime: fromTime(st.BeginTime), EndTime: fromTime(st.EndTime),
			Priority: st.Priority, Preemptible: st.Preemptible, PreemptedBy: st.PreemptedBy,
			TransitionTime: fromTime(st.TransitionTime), QueuePosition: st.QueuePosition,
		}
		for _, d := range st.Dials {
			l.Status.Dials = append(l.Status.Dials, &coordinatorv1.LeaseDial{
				ClientKeyThumbprint: d.ClientKeyThumbprint, ExpireTime: fromTime(d.ExpireTime)})
		}
	}
	return l, nil
}

func (leaseCodec) encode(rec store.Object, o *v1alpha1.Lease) {
	l := rec.(*coordinatorv1.Lease)
	sp, st := l.GetSpec(), l.GetStatus()
	o.Spec = v1alpha1.LeaseSpec{
		Client: sp.GetClient(), Selector: sp.GetSelector(), Exporter: sp.GetExporter(), Duration: toDuration(sp.GetDuration()),
		BeginTime: toTime(sp.GetBeginTime()), EndTime: toTime(sp.GetEndTime()), Tags: sp.GetTags(),
	}
	o.Status = v1alpha1.LeaseStatus{
		State: v1alpha1.LeaseState(enumText(st.GetState())), Reason: v1alpha1.LeaseReason(enumText(st.GetReason())),
		Message: st.GetMessage(), Exporter: st.GetExporter(), BeginTime: toTime(st.GetBeginTime()), EndTime: toTime(st.GetEndTime()),
		Priority: st.GetPriority(), Preemptible: st.GetPreemptible(), PreemptedBy: st.GetPreemptedBy(),
		TransitionTime: toTime(st.GetTransitionTime()), QueuePosition: st.GetQueuePosition(),
	}
	for _, d := range st.GetDials() {
		o.Status.Dials = append(o.Status.Dials, v1alpha1.LeaseDial{
			ClientKeyThumbprint: d.GetClientKeyThumbprint(), ExpireTime: toTime(d.GetExpireTime())})
	}
}

func (leaseCodec) spec(o *v1alpha1.Lease) any         { return o.Spec }
func (leaseCodec) status(o *v1alpha1.Lease) any       { return o.Status }
func (leaseCodec) setStatus(dst, src *v1alpha1.Lease) { dst.Status = *src.Status.DeepCopy() }

// policyCodec: an AccessPolicy is all spec.
type policyCodec struct{}

func (policyCodec) newObject() *v1alpha1.AccessPolicy { return &v1alpha1.AccessPolicy{} }

func (policyCodec) decode(o *v1alpha1.AccessPolicy) (store.Object, error) {
	p := &coordinatorv1.AccessPolicy{ExporterSelector: o.Spec.ExporterSelector}
	for _, r := range o.Spec.Rules {
		p.Rules = append(p.Rules, &coordinatorv1.AccessRule{ClientSelector: r.ClientSelector, Priority: r.Priority,
			MaximumDuration: fromDuration(r.MaximumDuration), Preemptible: r.Preemptible})
	}
	return p, nil
}

func (policyCodec) encode(rec store.Object, o *v1alpha1.AccessPolicy) {
	p := rec.(*coordinatorv1.AccessPolicy)
	o.Spec = v1alpha1.AccessPolicySpec{ExporterSelector: p.GetExporterSelector()}
	for _, r := range p.GetRules() {
		o.Spec.Rules = append(o.Spec.Rules, v1alpha1.AccessRule{ClientSelector: r.GetClientSelector(), Priority: r.GetPriority(),
			MaximumDuration: toDuration(r.GetMaximumDuration()), Preemptible: r.GetPreemptible()})
	}
}

func (policyCodec) spec(o *v1alpha1.AccessPolicy) any     { return o.Spec }
func (policyCodec) status(*v1alpha1.AccessPolicy) any     { return nil }
func (policyCodec) setStatus(_, _ *v1alpha1.AccessPolicy) {}

// signingKeyCodec keeps a signing key in a Secret, where Kubernetes keeps
// key material (encrypted at rest where the cluster is set up for it, and
// readable only to those RBAC lets read Secrets).
type signingKeyCodec struct{}

// Data keys of a signing key Secret.
const (
	seedKey       = "seed"
	retireTimeKey = "retire-time"
)

func (signingKeyCodec) newObject() *corev1.Secret {
	return &corev1.Secret{Type: signingKeySecretType}
}

func (signingKeyCodec) decode(o *corev1.Secret) (store.Object, error) {
	k := &coordinatorv1.SigningKey{Seed: o.Data[seedKey]}
	if s, ok := o.Data[retireTimeKey]; ok {
		t, err := time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			return nil, fmt.Errorf("secret %s: %s: %w", o.Name, retireTimeKey, err)
		}
		k.RetireTime = fromTime(&v1alpha1.Time{Time: t})
	}
	return k, nil
}

func (signingKeyCodec) encode(rec store.Object, o *corev1.Secret) {
	k := rec.(*coordinatorv1.SigningKey)
	o.Data = map[string][]byte{seedKey: k.GetSeed()}
	if t := k.GetRetireTime(); t != nil {
		o.Data[retireTimeKey] = []byte(t.AsTime().UTC().Format(time.RFC3339Nano))
	}
}

func (signingKeyCodec) spec(o *corev1.Secret) any     { return o.Data }
func (signingKeyCodec) status(*corev1.Secret) any     { return nil }
func (signingKeyCodec) setStatus(_, _ *corev1.Secret) {}
