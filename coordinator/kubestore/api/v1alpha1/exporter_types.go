package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Exporter is a daemon that exposes lab devices. Admins create it (its
// labels are what leases select on); the coordinator keeps its status.
// Creating one with kubectl makes the coordinator issue its token into the
// Secret jumpmesh-exporter-<name>.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=jumpmesh
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Lease",type=string,JSONPath=`.status.lease`
// +kubebuilder:printcolumn:name="Last Seen",type=date,JSONPath=`.status.lastSeen`
// +kubebuilder:printcolumn:name="Drivers",type=integer,JSONPath=`.status.report.driverCount`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Exporter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status ExporterStatus `json:"status,omitempty"`
}

// ExporterStatus is what the coordinator knows of an exporter.
type ExporterStatus struct {
	// Phase sums up online and lease: Offline, Available, Leased, or Lost
	// (serving a lease while its status stream is down).
	// +optional
	Phase ExporterPhase `json:"phase,omitempty"`
	// Online is true while its status stream is open.
	// +optional
	Online bool `json:"online,omitempty"`
	// Lease is the lease it serves; empty when free.
	// +optional
	Lease string `json:"lease,omitempty"`
	// LastSeen is when a coordinator last vouched for it: refreshed every
	// heartbeat interval while its status stream is open, and set when
	// it went offline.
	// +optional
	LastSeen *Time `json:"lastSeen,omitempty"`
	// SessionID names the status stream holding it online.
	// +optional
	SessionID string `json:"sessionID,omitempty"`
	// TokenID is the id of its one valid token; a new one revokes the old.
	// +optional
	TokenID string `json:"tokenID,omitempty"`
	// PublicKey is its Ed25519 key for the mesh.
	// +optional
	PublicKey []byte `json:"publicKey,omitempty"`
	// Report is the driver tree it registered with.
	// +optional
	Report *Report `json:"report,omitempty"`
	// Credentials names the Secret holding its token, when the coordinator
	// issued it for an exporter made with kubectl.
	// +optional
	Credentials string `json:"credentials,omitempty"`
}

// ExporterPhase sums up an exporter's state.
// +kubebuilder:validation:Enum=Offline;Available;Leased;Lost
type ExporterPhase string

// The exporter phases.
const (
	ExporterOffline   ExporterPhase = "Offline"
	ExporterAvailable ExporterPhase = "Available"
	ExporterLeased    ExporterPhase = "Leased"
	ExporterLost      ExporterPhase = "Lost"
)

// Report describes an exporter's driver tree.
type Report struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// DriverCount is len(drivers), for the printer column.
	// +optional
	DriverCount int32 `json:"driverCount,omitempty"`
	// Drivers lists parents before their children.
	// +optional
	// +listType=atomic
	Drivers []Driver `json:"drivers,omitempty"`
}

// Driver is one driver in the tree.
type Driver struct {
	UUID string `json:"uuid"`
	// ParentUUID is empty for a top-level driver.
	// +optional
	ParentUUID string `json:"parentUUID,omitempty"`
	// +optional
	Name string `json:"name,omitempty"`
	// Type is the driver type it was built from, e.g. virtual.power.
	// +optional
	Type string `json:"type,omitempty"`
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Description string `json:"description,omitempty"`
	// +optional
	// +listType=atomic
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// Interface is one protobuf service a driver serves.
type Interface struct {
	// Name is the full service name, e.g. jumpmesh.drivers.power.v1.Power.
	Name string `json:"name"`
	// +optional
	Description string `json:"description,omitempty"`
	// +optional
	// +listType=atomic
	Methods []Method `json:"methods,omitempty"`
}

// Method is one method of an interface.
type Method struct {
	Name string `json:"name"`
	// +optional
	Description string `json:"description,omitempty"`
	// +optional
	Kind MethodKind `json:"kind,omitempty"`
	// +optional
	RequestType string `json:"requestType,omitempty"`
	// +optional
	ResponseType string `json:"responseType,omitempty"`
}

// MethodKind says how a method is called.
// +kubebuilder:validation:Enum=Unary;ServerStream;ByteStream
type MethodKind string

// ExporterList is a list of exporters.
//
// +kubebuilder:object:root=true
type ExporterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Exporter `json:"items"`
}
