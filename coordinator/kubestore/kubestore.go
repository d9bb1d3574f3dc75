// Package kubestore is the coordinator's store on Kubernetes: each record
// is a custom resource (group jumpmesh.dev, see api/v1alpha1) or, for
// signing keys, a Secret, in one namespace. Several coordinators may share
// it: writes are compare-and-swap on resourceVersion, so of two writers
// holding one version exactly one wins.
//
// Reads come from informers: each kind is listed once and then watched
// (client-go reflectors), and List and Watch are served from that mirror.
// Get reads the API server, as callers use it to recover from a lost
// race. List waits until the mirror holds this store's own writes.
//
// Versions are resourceVersions read as numbers. On an etcd-backed API
// server they are etcd revisions: one counter for every resource, so a
// higher version is a later write, across kinds, as store.Store requires.
// Watch keeps commit order within each kind; across kinds, events come as
// the API server's separate watches deliver them and may interleave out of
// revision order. The coordinator orders by record version, never across
// kinds, so it needs no more; a consumer that does can sort by Revision.
package kubestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/kubestore/api/v1alpha1"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Options configure a Store.
type Options struct {
	// Namespace holds the records; the coordinator's service account needs
	// the Role in deploy/ there.
	Namespace string
	// RESTConfig reaches the API server. A zero QPS is raised to
	// DefaultQPS: client-go's own default of 5 would throttle scheduling.
	RESTConfig *rest.Config
	Logger     *slog.Logger
	// SyncTimeout bounds the first list of every kind; default 1 minute.
	SyncTimeout time.Duration
}

// Client rate limits used when RESTConfig sets none: a busy scheduler
// writes twice per lease it assigns and twice per lease it ends.
const (
	DefaultQPS   = 200
	DefaultBurst = 400
)

const defaultSyncTimeout = time.Minute

// signingKeySecretType marks the Secrets that hold signing keys.
const signingKeySecretType corev1.SecretType = "jumpmesh.dev/signing-key"

// signingKeyLabel selects the signing key Secrets among the namespace's.
var signingKeyLabel = map[string]string{"jumpmesh.dev/signing-key": "true"}

// Store is a store.Store on a Kubernetes API server.
type Store struct {
	ns     string
	log    *slog.Logger
	core   kubernetes.Interface
	kinds  map[store.Kind]kindStore
	hub    *hub
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var _ store.Store = (*Store)(nil)

// New connects to the API server, checks the CRDs are installed and fills
// the mirror of every kind. Close stops it.
func New(ctx context.Context, o Options) (*Store, error) {
	if o.Namespace == "" {
		return nil, errors.New("kubestore: no namespace; pass --namespace or run in a pod")
	}
	if o.RESTConfig == nil {
		return nil, errors.New("kubestore: no API server config")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = defaultSyncTimeout
	}
	cfg := rest.CopyConfig(o.RESTConfig)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = DefaultQPS, DefaultBurst
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	rc, pc, err := restClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{ns: o.Namespace, log: o.Logger, core: core, kinds: map[store.Kind]kindStore{}}
	kinds := []interface {
		kindStore
		setMirror(*mirror)
	}{
		crdKind[*v1alpha1.Exporter, *v1alpha1.ExporterList](store.Exporters, "exporters", rc, pc, o.Namespace, exporterCodec{}, true),
		crdKind[*v1alpha1.Client, *v1alpha1.ClientList](store.Clients, "clients", rc, pc, o.Namespace, clientCodec, true),
		crdKind[*v1alpha1.Admin, *v1alpha1.AdminList](store.Admins, "admins", rc, pc, o.Namespace, adminCodec, true),
		crdKind[*v1alpha1.Lease, *v1alpha1.LeaseList](store.Leases, "leases", rc, pc, o.Namespace, leaseCodec{}, true),
		crdKind[*v1alpha1.AccessPolicy, *v1alpha1.AccessPolicyList](store.Policies, "accesspolicies", rc, pc, o.Namespace, policyCodec{}, false),
		&kind[*corev1.Secret, *corev1.SecretList]{name: store.SigningKeys, api: core.CoreV1().Secrets(o.Namespace),
			codec: signingKeyCodec{}, prefix: "jumpmesh-signing-key-", hidden: signingKeyLabel},
	}
	// Every mirror starts from one revision, read after checking that each
	// kind can be listed.
	var floor uint64
	for _, k := range kinds {
		rev, err := k.probe(ctx)
		if err != nil {
			return nil, err
		}
		floor = max(floor, rev)
	}
	s.hub = newHub(floor, o.Logger)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for _, k := range kinds {
		name := k.kindName()
		s.kinds[name] = k
		m := s.hub.addMirror(name, k)
		k.setMirror(m)
		r := cache.NewReflectorWithOptions(k.listWatch(floor), k.exampleObject(), m,
			cache.ReflectorOptions{Name: "kubestore " + string(name)})
		s.wg.Go(func() { r.RunWithContext(runCtx) })
	}
	syncCtx, cancelSync := context.WithTimeout(ctx, o.SyncTimeout)
	defer cancelSync()
	err = s.hub.waitFor(syncCtx, func() bool {
		for _, m := range s.hub.mirrors {
			if !m.synced {
				return false
			}
		}
		return true
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("kubestore: list every kind: %w", err)
	}
	return s, nil
}

func restClient(cfg *rest.Config) (rest.Interface, runtime.ParameterCodec, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, nil, fmt.Errorf("kubestore: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &v1alpha1.SchemeGroupVersion
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, nil, fmt.Errorf("kubestore: %w", err)
	}
	return rc, runtime.NewParameterCodec(scheme), nil
}

// crdKind is a kind kept in a jumpmesh.dev custom resource.
func crdKind[T object, L runtime.Object, C codec[T]](k store.Kind, resource string, rc rest.Interface,
	pc runtime.ParameterCodec, ns string, c C, hasStatus bool) *kind[T, L] {
	api := gentype.NewClientWithList[T, L](resource, rc, pc, ns,
		func() T { return c.newObject() }, func() L { return newList[L]() })
	out := &kind[T, L]{name: k, api: api, codec: c}
	if hasStatus {
		out.status = api
	}
	return out
}

// newList returns an empty list of type L, a pointer to a list struct.
func newList[L runtime.Object]() L {
	return reflect.New(reflect.TypeFor[L]().Elem()).Interface().(L)
}

func (k *kind[T, L]) kindName() store.Kind { return k.name }
func (k *kind[T, L]) setMirror(m *mirror)  { k.mirror = m }

// probe lists one object of the kind, to report a missing CRD or missing
// permissions clearly, and returns the revision it read at.
func (k *kind[T, L]) probe(ctx context.Context) (uint64, error) {
	opts := metav1.ListOptions{Limit: 1}
	for key, v := range k.hidden {
		opts.LabelSelector = key + "=" + v
	}
	list, err := k.api.List(ctx, opts)
	switch {
	case apierrors.IsNotFound(err):
		return 0, fmt.Errorf("kubestore: the API server does not serve %s; install the CRDs: kubectl apply -k deploy/crds", k.name)
	case apierrors.IsForbidden(err):
		return 0, fmt.Errorf("kubestore: may not list %s: %w; grant the coordinator the Role in deploy/", k.name, err)
	case err != nil:
		return 0, fmt.Errorf("kubestore: list %s: %w", k.name, err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return 0, fmt.Errorf("kubestore: list %s: %w", k.name, err)
	}
	return version(lm.GetResourceVersion())
}

// Close stops the reflectors and ends every watch. It does not touch the
// cluster.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.cancel()
		h := s.hub
		h.mu.Lock()
		h.closed = true
		for f := range h.watchers {
			f.Stop()
		}
		h.broadcastLocked()
		h.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *Store) kind(k store.Kind) (kindStore, error) {
	ks, ok := s.kinds[k]
	if !ok {
		return nil, fmt.Errorf("store: unknown kind %q", k)
	}
	s.hub.mu.Lock()
	closed := s.hub.closed
	s.hub.mu.Unlock()
	if closed {
		return nil, store.ErrClosed
	}
	return ks, nil
}

// Get implements store.Store; it reads the API server.
func (s *Store) Get(ctx context.Context, k store.Kind, name string) (store.Object, error) {
	ks, err := s.kind(k)
	if err != nil {
		return nil, err
	}
	return ks.get(ctx, name)
}

// List implements store.Store from the mirror, once it holds this store's
// own writes.
func (s *Store) List(ctx context.Context, k store.Kind) ([]store.Object, uint64, error) {
	if _, err := s.kind(k); err != nil {
		return nil, 0, err
	}
	m := s.hub.mirrors[k]
	if err := s.hub.waitFor(ctx, m.caughtUpLocked); err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k, err)
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	objs, rev := m.listLocked()
	return objs, rev, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, obj store.Object) error {
	return s.write(ctx, obj, kindStore.create)
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, obj store.Object) error {
	return s.write(ctx, obj, kindStore.update)
}

func (s *Store) write(ctx context.Context, obj store.Object, op func(kindStore, context.Context, store.Object) (uint64, error)) error {
	k, name := store.KindOf(obj), obj.GetMetadata().GetName()
	if k == "" || name == "" {
		return fmt.Errorf("store: %T needs a kind and a name", obj)
	}
	ks, err := s.kind(k)
	if err != nil {
		return err
	}
	v, err := op(ks, ctx, obj)
	if err != nil {
		return err
	}
	obj.GetMetadata().ResourceVersion = v
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, k store.Kind, name string, version uint64) error {
	ks, err := s.kind(k)
	if err != nil {
		return err
	}
	return ks.delete(ctx, name, version)
}
