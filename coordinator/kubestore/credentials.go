package kubestore

import (
	"context"
	"fmt"
	"time"

	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/coordinator/kubestore/api/v1alpha1"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Issuer issues identity tokens; *coordinator.Coordinator is one.
type Issuer interface {
	// RotateToken makes a new token for the client or exporter, revoking
	// the one before.
	RotateToken(ctx context.Context, kind token.Kind, name string) (string, error)
}

// CredentialsOptions configure RunCredentials.
type CredentialsOptions struct {
	Issuer Issuer
	// Endpoint and CAFingerprint go into the Secrets, so that a client
	// config can be made from one alone.
	Endpoint      string
	CAFingerprint string
}

// Data keys of a credentials Secret.
const (
	TokenKey         = "token"
	EndpointKey      = "endpoint"
	CAFingerprintKey = "ca-fingerprint"
	// ClientConfigKey holds a ready client config (jmp's
	// JMP_CLIENT_CONFIG), in clients' Secrets.
	ClientConfigKey = "client.yaml"
)

// credentialsLabel marks the Secrets RunCredentials writes; its value is
// the kind of identity.
const credentialsLabel = "jumpmesh.dev/credentials-for"

// credentialsRetry is how soon a failed issue is tried again when nothing
// else changes.
const credentialsRetry = 30 * time.Second

// CredentialsSecret names the Secret holding the token of a client or
// exporter made with kubectl.
func CredentialsSecret(kind token.Kind, name string) string {
	return fmt.Sprintf("jumpmesh-%s-%s", kind, name)
}

// RunCredentials gives every Client and Exporter made with kubectl (one
// without a token, that the coordinator did not make) a token, written to
// the Secret CredentialsSecret names, which the resource owns and its
// status names. It runs while this replica leads (one replica issues, so
// two never revoke each other's tokens), until ctx ends.
func (s *Store) RunCredentials(ctx context.Context, o CredentialsOptions) {
	s.Lead(ctx, "jumpmesh-credentials", func(ctx context.Context) {
		// done: identities whose Secret this leader wrote or saw.
		done := map[string]bool{}
		for {
			s.hub.mu.Lock()
			changed := s.hub.changed
			s.hub.mu.Unlock()
			wait := time.Duration(0)
			for _, c := range s.needCredentials(done) {
				if err := s.issue(ctx, o, c); err != nil {
					s.log.Warn("kubestore: issue credentials; will retry", "kind", c.kind, "name", c.name, "err", err)
					wait = credentialsRetry
					continue
				}
				done[string(c.kind)+"/"+c.name] = true
			}
			var retry <-chan time.Time
			if wait > 0 {
				retry = time.After(wait)
			}
			select {
			case <-changed:
			case <-retry:
			case <-ctx.Done():
				return
			}
		}
	})
}

// identityRef is an identity that needs credentials.
type identityRef struct {
	kind       token.Kind
	name       string
	uid        string
	objectKind string
	// marked: its status already names its Secret.
	marked bool
}

// needCredentials lists the identities made with kubectl that have no
// token yet, and those whose Secret this leader has not yet checked.
func (s *Store) needCredentials(done map[string]bool) []identityRef {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	var out []identityRef
	check := func(kind token.Kind, objectKind string, obj object, st v1alpha1.IdentityStatus) {
		_, byCoordinator := obj.GetAnnotations()[createTimeAnnotation]
		fresh := st.TokenID == "" && !byCoordinator
		if fresh || st.Credentials != "" && !done[string(kind)+"/"+obj.GetName()] {
			out = append(out, identityRef{kind: kind, name: obj.GetName(), uid: string(obj.GetUID()),
				objectKind: objectKind, marked: st.Credentials != ""})
		}
	}
	for _, e := range s.hub.mirrors[store.Clients].objs {
		c := e.obj.(*v1alpha1.Client)
		check(token.Client, "Client", c, c.Status)
	}
	for _, e := range s.hub.mirrors[store.Exporters].objs {
		x := e.obj.(*v1alpha1.Exporter)
		check(token.Exporter, "Exporter", x, v1alpha1.IdentityStatus{TokenID: x.Status.TokenID, Credentials: x.Status.Credentials})
	}
	return out
}

// issue makes the identity's token and writes its Secret. Its status
// names the Secret first, so that a replica dying half way leaves a mark
// the next leader finishes from.
func (s *Store) issue(ctx context.Context, o CredentialsOptions, id identityRef) error {
	secrets := s.core.CoreV1().Secrets(s.ns)
	secret := CredentialsSecret(id.kind, id.name)
	if id.marked {
		if _, err := secrets.Get(ctx, secret, metav1.GetOptions{}); err == nil {
			return nil
		} else if !apierrors.IsNotFound(err) {
			return err
		}
	} else if err := s.markCredentials(ctx, id, secret); err != nil {
		return err
	}
	tok, err := o.Issuer.RotateToken(ctx, id.kind, id.name)
	if err != nil {
		return fmt.Errorf("issue token: %w", err)
	}
	data := map[string][]byte{TokenKey: []byte(tok), EndpointKey: []byte(o.Endpoint), CAFingerprintKey: []byte(o.CAFingerprint)}
	if id.kind == token.Client {
		cfg := &coordclient.ClientConfig{APIVersion: coordclient.APIVersion, Kind: coordclient.KindClientConfig,
			Metadata: coordclient.Metadata{Name: id.name}, Endpoint: o.Endpoint,
			TLS: coordclient.TLSConfig{CAFingerprint: o.CAFingerprint}, Token: tok}
		yaml, err := cfg.Marshal()
		if err != nil {
			return err
		}
		data[ClientConfigKey] = yaml
	}
	obj := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret, Labels: map[string]string{credentialsLabel: string(id.kind)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(),
				Kind: id.objectKind, Name: id.name, UID: types.UID(id.uid)}}},
		Data: data,
	}
	_, err = secrets.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Left by an earlier try or an earlier resource of the name.
		_, err = secrets.Update(ctx, obj, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("write secret %s: %w", secret, err)
	}
	s.log.Info("kubestore: issued credentials", "kind", id.kind, "name", id.name, "secret", secret)
	return nil
}

// markCredentials names the Secret in the identity's status.
func (s *Store) markCredentials(ctx context.Context, id identityRef, secret string) error {
	var err error
	switch id.kind {
	case token.Client:
		k := s.kinds[store.Clients].(*kind[*v1alpha1.Client, *v1alpha1.ClientList])
		err = mark(ctx, k, id.name, func(c *v1alpha1.Client) { c.Status.Credentials = secret })
	case token.Exporter:
		k := s.kinds[store.Exporters].(*kind[*v1alpha1.Exporter, *v1alpha1.ExporterList])
		err = mark(ctx, k, id.name, func(e *v1alpha1.Exporter) { e.Status.Credentials = secret })
	default:
		err = fmt.Errorf("no credentials for %s", id.kind)
	}
	return err
}

func mark[T object, L runtime.Object](ctx context.Context, k *kind[T, L], name string, set func(T)) error {
	obj, err := k.api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	set(obj)
	if _, err = k.status.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("name the secret in %s's status: %w", name, err)
	}
	return nil
}
