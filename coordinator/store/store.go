// Package store defines the records the coordinator keeps and the contract
// a backing store meets: typed reads, writes that compare the version they
// read and swap, and a watch of every change, in commit order per kind.
// Implementations live in subpackages (boltstore: one file, embedded) and
// elsewhere (kubestore: Kubernetes custom resources), share Feed for their
// watches, and prove themselves with storetest.
package store

import (
	"context"
	"errors"
	"fmt"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/proto"
)

// Kind names a collection of records.
type Kind string

// The kinds the coordinator keeps.
const (
	Exporters   Kind = "exporters"
	Clients     Kind = "clients"
	Admins      Kind = "admins"
	Leases      Kind = "leases"
	Policies    Kind = "accesspolicies"
	SigningKeys Kind = "signingkeys"
)

// Kinds lists every kind, for stores that prepare a place for each.
var Kinds = []Kind{Exporters, Clients, Admins, Leases, Policies, SigningKeys}

// Object is one record: a resource message with metadata.
type Object interface {
	proto.Message
	GetMetadata() *coordinatorv1.ObjectMeta
}

// New returns an empty record of the kind.
func New(k Kind) (Object, error) {
	switch k {
	case Exporters:
		return &coordinatorv1.Exporter{}, nil
	case Clients:
		return &coordinatorv1.Client{}, nil
	case Admins:
		return &coordinatorv1.Admin{}, nil
	case Leases:
		return &coordinatorv1.Lease{}, nil
	case Policies:
		return &coordinatorv1.AccessPolicy{}, nil
	case SigningKeys:
		return &coordinatorv1.SigningKey{}, nil
	}
	return nil, fmt.Errorf("store: unknown kind %q", k)
}

// KindOf returns the kind of a record, or "" for a message that is none.
func KindOf(o Object) Kind {
	switch o.(type) {
	case *coordinatorv1.Exporter:
		return Exporters
	case *coordinatorv1.Client:
		return Clients
	case *coordinatorv1.Admin:
		return Admins
	case *coordinatorv1.Lease:
		return Leases
	case *coordinatorv1.AccessPolicy:
		return Policies
	case *coordinatorv1.SigningKey:
		return SigningKeys
	}
	return ""
}

// Errors a store returns; check them with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrConflict  = errors.New("changed since it was read")
	ErrCompacted = errors.New("watch revision no longer kept")
	ErrClosed    = errors.New("store closed")
)

// EventType says what happened to a record.
type EventType int

const (
	Put EventType = iota + 1
	Deleted
)

// Event is one committed change. For Put, Object is the record as written;
// for Deleted, the record as it was, with its kind and name.
type Event struct {
	Type     EventType
	Kind     Kind
	Object   Object
	Revision uint64
}

// Store keeps records. Every write is atomic and durable when it returns
// nil: a crash afterwards loses nothing it acknowledged.
//
// Versions are store revisions: they increase with every write across all
// kinds, so a higher version is always a later write.
type Store interface {
	// Get returns a copy of the record, or ErrNotFound.
	Get(ctx context.Context, kind Kind, name string) (Object, error)
	// List returns copies of every record of the kind and the store's
	// revision when it read them.
	List(ctx context.Context, kind Kind) ([]Object, uint64, error)
	// Create stores a new record (ErrExists if one has its name) and sets its
	// resource_version.
	Create(ctx context.Context, obj Object) error
	// Update replaces a record if its version is still obj's
	// resource_version (else ErrConflict; ErrNotFound if gone), and sets the
	// new version on obj.
	Update(ctx context.Context, obj Object) error
	// Delete removes a record if its version is still version (0: any).
	Delete(ctx context.Context, kind Kind, name string, version uint64) error
	// Watch sends every change after revision since until ctx ends; then it
	// closes the channel. ErrCompacted if changes after since are no longer
	// kept: List again.
	//
	// Changes of one kind come in commit order. Changes of different kinds
	// may interleave out of revision order (kubestore watches each kind
	// apart); every event carries its revision, so a consumer that needs a
	// total order can sort. The coordinator needs none: it orders each
	// record by its own version.
	Watch(ctx context.Context, since uint64) (<-chan Event, error)
	Close() error
}
