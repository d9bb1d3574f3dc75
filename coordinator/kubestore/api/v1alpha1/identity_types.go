package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Client is an identity that leases exporters. Creating one with kubectl
// makes the coordinator issue its token into the Secret
// jumpmesh-client-<name>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=jumpmesh
// +kubebuilder:printcolumn:name="Credentials",type=string,JSONPath=`.status.credentials`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Client struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status IdentityStatus `json:"status,omitempty"`
}

// Admin is an identity that manages the lab.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=jumpmesh
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Admin struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status IdentityStatus `json:"status,omitempty"`
}

// IdentityStatus is the coordinator's bookkeeping for an identity.
type IdentityStatus struct {
	// TokenID is the id of its one valid token; a new one revokes the old.
	// Empty until a token is issued.
	// +optional
	TokenID string `json:"tokenID,omitempty"`
	// Credentials names the Secret holding its token, when the coordinator
	// issued it for an identity made with kubectl.
	// +optional
	Credentials string `json:"credentials,omitempty"`
}

// ClientList is a list of clients.
//
// +kubebuilder:object:root=true
type ClientList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Client `json:"items"`
}

// AdminList is a list of admins.
//
// +kubebuilder:object:root=true
type AdminList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Admin `json:"items"`
}
