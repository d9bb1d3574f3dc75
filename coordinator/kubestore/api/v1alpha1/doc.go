// Package v1alpha1 holds the jumpmesh.dev/v1alpha1 custom resources the
// coordinator's Kubernetes store keeps its records in: Exporter, Client,
// Admin, Lease and AccessPolicy. The CRD manifests in deploy/crds are
// generated from these types by controller-gen; regenerate them with
// `go generate ./coordinator/kubestore/api/...`.
//
// +kubebuilder:object:generate=true
// +groupName=jumpmesh.dev
package v1alpha1

//go:generate go tool -modfile=../../tools.mod controller-gen object paths=./...
//go:generate go tool -modfile=../../tools.mod controller-gen crd:crdVersions=v1 paths=./... output:crd:artifacts:config=../../../../deploy/crds
