package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AccessPolicy says which clients may lease the exporters it selects.
// Exporters no policy selects are open to every client at priority 0.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=jumpmesh,shortName=jmpolicy
// +kubebuilder:printcolumn:name="Exporters",type=string,JSONPath=`.spec.exporterSelector`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AccessPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec AccessPolicySpec `json:"spec,omitempty"`
}

// AccessPolicySpec selects exporters and says who may use them.
type AccessPolicySpec struct {
	// ExporterSelector is a label selector of the exporters it governs;
	// empty selects all.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ExporterSelector string `json:"exporterSelector,omitempty"`
	// Rules: of those whose client selector matches, the highest priority
	// that allows the lease's duration applies.
	// +optional
	// +listType=atomic
	Rules []AccessRule `json:"rules,omitempty"`
}

// AccessRule grants matching clients access on terms.
type AccessRule struct {
	// ClientSelector is a label selector of the clients; empty matches all.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ClientSelector string `json:"clientSelector,omitempty"`
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// MaximumDuration bounds a lease; unset means no bound.
	// +optional
	MaximumDuration *metav1.Duration `json:"maximumDuration,omitempty"`
	// Preemptible makes leases under this rule spot leases.
	// +optional
	Preemptible bool `json:"preemptible,omitempty"`
}

// AccessPolicyList is a list of access policies.
//
// +kubebuilder:object:root=true
type AccessPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AccessPolicy `json:"items"`
}
