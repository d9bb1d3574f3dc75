package kubestore

import (
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/kubestore/api/v1alpha1"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// object is a Kubernetes object a record is kept in.
type object interface {
	runtime.Object
	metav1.Object
}

// codec maps one kind of record to its Kubernetes object and back.
type codec[T object] interface {
	newObject() T
	// decode reads the record out of obj; the record's name and version
	// are set by the caller.
	decode(obj T) (store.Object, error)
	// encode writes the record's fields into obj and leaves the rest of it
	// (annotations and finalizers of others, fields only Kubernetes sets)
	// as it was.
	encode(rec store.Object, obj T)
	// spec is what a write to the object itself changes, besides labels.
	spec(obj T) any
	// status is what a write to the status subresource changes; nil for a
	// kind without one.
	status(obj T) any
	// setStatus copies src's status into dst.
	setStatus(dst, src T)
}

// createTimeAnnotation keeps a record's create_time to the nanosecond:
// metadata.creationTimestamp has whole seconds, too coarse to order a busy
// lease queue. Objects made with kubectl lack it and use
// creationTimestamp.
const createTimeAnnotation = "jumpmesh.dev/create-time"

// version parses a resourceVersion. Kubernetes calls them opaque; with
// etcd they are its revisions, one counter across every resource, which
// is what store.Store's versions are. A server whose versions are not
// numbers cannot back this store.
func version(rv string) (uint64, error) {
	v, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("resourceVersion %q is not an etcd revision; this store needs an API server backed by etcd", rv)
	}
	return v, nil
}

func decodeMeta(obj metav1.Object, name string, hidden map[string]string) (*coordinatorv1.ObjectMeta, error) {
	v, err := version(obj.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	m := &coordinatorv1.ObjectMeta{Name: name, ResourceVersion: v}
	labels := maps.Clone(obj.GetLabels())
	for k := range hidden {
		delete(labels, k)
	}
	if len(labels) > 0 {
		m.Labels = labels
	}
	created := obj.GetCreationTimestamp().Time
	if s, ok := obj.GetAnnotations()[createTimeAnnotation]; ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", createTimeAnnotation, err)
		}
		created = t
	}
	if !created.IsZero() {
		m.CreateTime = timestamppb.New(created)
	}
	return m, nil
}

// encodeMeta writes labels and the create time; hidden labels are the
// store's own, added to the record's.
func encodeMeta(m *coordinatorv1.ObjectMeta, obj metav1.Object, hidden map[string]string) {
	labels := maps.Clone(m.GetLabels())
	if len(hidden) > 0 {
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, hidden)
	}
	obj.SetLabels(labels)
	if t := m.GetCreateTime(); t != nil {
		a := obj.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[createTimeAnnotation] = t.AsTime().UTC().Format(time.RFC3339Nano)
		obj.SetAnnotations(a)
	}
}

func toTime(t *timestamppb.Timestamp) *v1alpha1.Time {
	if t == nil {
		return nil
	}
	return &v1alpha1.Time{Time: t.AsTime()}
}

func fromTime(t *v1alpha1.Time) *timestamppb.Timestamp {
	if t == nil || t.IsZero() {
		return nil
	}
	return timestamppb.New(t.Time)
}

func toDuration(d *durationpb.Duration) *metav1.Duration {
	if d == nil {
		return nil
	}
	return &metav1.Duration{Duration: d.AsDuration()}
}

func fromDuration(d *metav1.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(d.Duration)
}
