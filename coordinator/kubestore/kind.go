package kubestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/kubestore/api/v1alpha1"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// client is the typed API of one resource in the namespace: a generated
// clientset's or a gentype client.
type client[T object, L runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// statusClient writes a status subresource.
type statusClient[T object] interface {
	UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// undoTimeout bounds the delete that undoes half a create.
const undoTimeout = 10 * time.Second

// kind keeps one kind of record in one kind of Kubernetes object.
type kind[T object, L runtime.Object] struct {
	name   store.Kind
	api    client[T, L]
	status statusClient[T] // nil: no status subresource
	codec  codec[T]
	// prefix turns a record name into an object name (Secrets share their
	// namespace with others); hidden are labels the store adds to select
	// its objects.
	prefix string
	hidden map[string]string
	mirror *mirror
}

// kindStore is a kind with its types erased, as the Store holds it.
type kindStore interface {
	get(ctx context.Context, name string) (store.Object, error)
	create(ctx context.Context, rec store.Object) (uint64, error)
	update(ctx context.Context, rec store.Object) (uint64, error)
	delete(ctx context.Context, name string, version uint64) error
	listWatch(floor uint64) cache.ListerWatcher
	exampleObject() runtime.Object
	toRecord(obj any) (store.Object, error)
	recordName(obj any) string
	kindName() store.Kind
	probe(ctx context.Context) (uint64, error)
}

func (k *kind[T, L]) objectName(name string) string { return k.prefix + name }

func (k *kind[T, L]) recordName(obj any) string {
	return strings.TrimPrefix(obj.(metav1.Object).GetName(), k.prefix)
}

func (k *kind[T, L]) exampleObject() runtime.Object { return k.codec.newObject() }

// toRecord converts an object of this kind to its record.
func (k *kind[T, L]) toRecord(obj any) (store.Object, error) {
	o, ok := obj.(T)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected object %T", k.name, obj)
	}
	rec, err := k.codec.decode(o)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.name, o.GetName(), err)
	}
	meta, err := decodeMeta(o, k.recordName(o), k.hidden)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.name, o.GetName(), err)
	}
	setMeta(rec, meta)
	return rec, nil
}

func (k *kind[T, L]) get(ctx context.Context, name string) (store.Object, error) {
	obj, err := k.api.Get(ctx, k.objectName(name), metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", k.name, name, apiError(err))
	}
	if !k.ours(obj) {
		return nil, fmt.Errorf("get %s/%s: %w", k.name, name, store.ErrNotFound)
	}
	return k.toRecord(obj)
}

// ours tells whether obj carries the labels that mark the store's objects.
func (k *kind[T, L]) ours(obj T) bool {
	for key, v := range k.hidden {
		if obj.GetLabels()[key] != v {
			return false
		}
	}
	return true
}

func (k *kind[T, L]) encode(rec store.Object, obj T) {
	encodeMeta(rec.GetMetadata(), obj, k.hidden)
	k.codec.encode(rec, obj)
}

// create makes the object. A kind with a status subresource takes two
// requests, as Kubernetes drops the status of a new object: the object,
// then its status. Should the second fail, the first is undone.
func (k *kind[T, L]) create(ctx context.Context, rec store.Object) (uint64, error) {
	name := rec.GetMetadata().GetName()
	obj := k.codec.newObject()
	obj.SetName(k.objectName(name))
	k.encode(rec, obj)
	out, err := k.api.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", k.name, name, apiError(err))
	}
	if k.status != nil && !isZero(k.codec.status(obj)) {
		k.codec.setStatus(out, obj)
		withStatus, err := k.status.UpdateStatus(ctx, out, metav1.UpdateOptions{})
		if err != nil {
			k.undoCreate(out)
			return 0, fmt.Errorf("create %s/%s: set status: %w", k.name, name, apiError(err))
		}
		out = withStatus
	}
	return k.written(out)
}

func (k *kind[T, L]) undoCreate(obj T) {
	ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
	defer cancel()
	rv := obj.GetResourceVersion()
	_ = k.api.Delete(ctx, obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
}

// update writes rec over the object if the object is still at rec's
// version. A change to both spec and status takes two requests, each
// checking the version; if another writer slips between them, the first
// half stays and the update reports ErrConflict, like any lost race, for
// the caller to read again and retry.
func (k *kind[T, L]) update(ctx context.Context, rec store.Object) (uint64, error) {
	name := rec.GetMetadata().GetName()
	base, err := k.base(ctx, name, rec.GetMetadata().GetResourceVersion())
	if err != nil {
		return 0, fmt.Errorf("update %s/%s: %w", k.name, name, err)
	}
	want := base.DeepCopyObject().(T)
	k.encode(rec, want)
	specChanged := !semantic.DeepEqual(base.GetLabels(), want.GetLabels()) ||
		!semantic.DeepEqual(base.GetAnnotations(), want.GetAnnotations()) ||
		!semantic.DeepEqual(k.codec.spec(base), k.codec.spec(want))
	statusChanged := k.status != nil && !semantic.DeepEqual(k.codec.status(base), k.codec.status(want))
	// base is shared with the mirror; only want is ours to change.
	out := want
	// A write that changes nothing still goes to the server, which checks
	// the version.
	if specChanged || !statusChanged {
		if out, err = k.api.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("update %s/%s: %w", k.name, name, apiError(err))
		}
	}
	if statusChanged {
		k.codec.setStatus(out, want)
		if out, err = k.status.UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("update %s/%s status: %w", k.name, name, apiError(err))
		}
	}
	return k.written(out)
}

// base returns the object at version, with everything in it that the
// record does not hold: from this store's last write or the mirror when
// either has that version, else from the server.
func (k *kind[T, L]) base(ctx context.Context, name string, version uint64) (T, error) {
	var zero T
	if version != 0 {
		obj, newer := k.mirror.at(k.objectName(name), version)
		if newer {
			return zero, store.ErrConflict
		}
		if obj != nil {
			return obj.(T), nil
		}
	}
	obj, err := k.api.Get(ctx, k.objectName(name), metav1.GetOptions{})
	if err != nil {
		return zero, apiError(err)
	}
	if !k.ours(obj) {
		return zero, store.ErrNotFound
	}
	if v, err := strconv.ParseUint(obj.GetResourceVersion(), 10, 64); err != nil || v != version {
		// An update must name the version it read.
		return zero, store.ErrConflict
	}
	return obj, nil
}

// written notes a write's result for read-your-writes and returns its
// version.
func (k *kind[T, L]) written(obj T) (uint64, error) {
	v, err := version(obj.GetResourceVersion())
	if err != nil {
		return 0, err
	}
	k.mirror.wrote(obj.GetName(), obj, v)
	return v, nil
}

func (k *kind[T, L]) delete(ctx context.Context, name string, version uint64) error {
	opts := metav1.DeleteOptions{}
	if version != 0 {
		rv := strconv.FormatUint(version, 10)
		opts.Preconditions = &metav1.Preconditions{ResourceVersion: &rv}
	}
	if k.hidden != nil {
		// Only delete what the store made.
		if _, err := k.base(ctx, name, 0); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("delete %s/%s: %w", k.name, name, err)
		}
	}
	if err := k.api.Delete(ctx, k.objectName(name), opts); err != nil {
		return fmt.Errorf("delete %s/%s: %w", k.name, name, apiError(err))
	}
	k.mirror.deleted(k.objectName(name), version)
	return nil
}

// listWatch lists and watches the kind for the mirror. The first list
// reads at floor, so that every kind's mirror starts from the same
// revision; later lists (after a watch fell too far behind) read the
// latest.
func (k *kind[T, L]) listWatch(floor uint64) cache.ListerWatcher {
	selector := ""
	for key, v := range k.hidden {
		selector = key + "=" + v
	}
	first := true
	return noWatchList{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = selector
			if first && opts.Continue == "" {
				opts.ResourceVersion = strconv.FormatUint(floor, 10)
				opts.ResourceVersionMatch = metav1.ResourceVersionMatchExact
			}
			list, err := k.api.List(ctx, opts)
			if err == nil {
				first = false
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = selector
			return k.api.Watch(ctx, opts)
		},
	}}
}

// noWatchList makes the reflector list and then watch, rather than stream
// its first list in a watch: the first list must read at the floor
// revision.
type noWatchList struct{ *cache.ListWatch }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

// apiError maps the API server's answers to the store's errors.
func apiError(err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return store.ErrNotFound
	case apierrors.IsAlreadyExists(err):
		return store.ErrExists
	case apierrors.IsConflict(err):
		return store.ErrConflict
	}
	return err
}

func isZero(v any) bool { return v == nil || reflect.ValueOf(v).IsZero() }

// semantic is apimachinery's semantic equality, also for v1alpha1.Time:
// the generic comparison refuses the unexported fields of its time.Time.
var semantic = func() conversion.Equalities {
	e := conversion.Equalities{Equalities: maps.Clone(equality.Semantic.Equalities)}
	if err := e.AddFunc(func(a, b v1alpha1.Time) bool { return a.Equal(b.Time) }); err != nil {
		panic(err)
	}
	return e
}()
