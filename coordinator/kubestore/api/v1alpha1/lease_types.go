package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Lease is a client's claim on one exporter for a time. Clients make them
// through the coordinator (`jmp create lease`), which checks them against
// the access policies and schedules them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=jumpmesh
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Exporter",type=string,JSONPath=`.status.exporter`
// +kubebuilder:printcolumn:name="Client",type=string,JSONPath=`.spec.client`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.endTime`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Lease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LeaseSpec   `json:"spec"`
	Status LeaseStatus `json:"status,omitempty"`
}

// LeaseSpec is what the client asked for: an exporter by selector or by
// name (the coordinator checks a request has one or the other).
type LeaseSpec struct {
	// Client is the client holding it; transfers change it.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Client string `json:"client"`
	// Selector is a label selector in the Kubernetes syntax, e.g.
	// "board=rpi4,env!=prod".
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Selector string `json:"selector,omitempty"`
	// Exporter names one exporter, instead of a selector.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Exporter string `json:"exporter,omitempty"`
	// Duration is how long it lasts once ready.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
	// BeginTime: not ready before it.
	// +optional
	BeginTime *Time `json:"beginTime,omitempty"`
	// EndTime: ends then whatever happens.
	// +optional
	EndTime *Time `json:"endTime,omitempty"`
	// Tags are for filtering leases.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Tags map[string]string `json:"tags,omitempty"`
}

// LeaseStatus is where the coordinator's scheduler has got with it.
type LeaseStatus struct {
	// +optional
	State LeaseState `json:"state,omitempty"`
	// Reason says why it is in its state.
	// +optional
	Reason LeaseReason `json:"reason,omitempty"`
	// Message is the reason for people.
	// +optional
	Message string `json:"message,omitempty"`
	// Exporter is the exporter it holds once ready.
	// +optional
	Exporter string `json:"exporter,omitempty"`
	// BeginTime is when it turned ready.
	// +optional
	BeginTime *Time `json:"beginTime,omitempty"`
	// EndTime is when it ends (ready) or ended.
	// +optional
	EndTime *Time `json:"endTime,omitempty"`
	// Priority comes from the access policy; higher goes first.
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// Preemptible marks a spot lease.
	// +optional
	Preemptible bool `json:"preemptible,omitempty"`
	// PreemptedBy names the lease that preempts it.
	// +optional
	PreemptedBy string `json:"preemptedBy,omitempty"`
	// TransitionTime is when state or reason last changed.
	// +optional
	TransitionTime *Time `json:"transitionTime,omitempty"`
	// QueuePosition is how many pending leases go before it.
	// +optional
	QueuePosition int32 `json:"queuePosition,omitempty"`
	// Dials are the client's live mesh sessions, one per client key: the
	// coordinator holding the exporter's status stream gives the exporter
	// a token for each.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Dials []LeaseDial `json:"dials,omitempty"`
}

// LeaseDial is one mesh session a client asked for. Its tokens are never
// stored.
type LeaseDial struct {
	// ClientKeyThumbprint is the RFC 7638 thumbprint of the client's key.
	// +kubebuilder:validation:MaxLength=64
	ClientKeyThumbprint string `json:"clientKeyThumbprint"`
	// ExpireTime is when the session's newest token expires.
	ExpireTime *Time `json:"expireTime"`
}

// LeaseState is a lease's state.
// +kubebuilder:validation:Enum=Pending;Ready;Ended
type LeaseState string

// LeaseReason says why a lease is in its state.
// +kubebuilder:validation:Enum=NoMatch;NotAllowed;AllBusy;ExporterOffline;Scheduled;Acquired;PreemptionNotice;Expired;Released;Preempted;ExporterLost;ExporterDeleted;ClientDeleted;Preempting;Queued
type LeaseReason string

// LeaseList is a list of leases.
//
// +kubebuilder:object:root=true
type LeaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Lease `json:"items"`
}
