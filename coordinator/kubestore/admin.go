package kubestore

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Secret holding the first admin's client config, which the
// coordinator makes on its first start against an empty namespace:
//
//	kubectl get secret jumpmesh-admin -o jsonpath='{.data.admin\.yaml}' | base64 -d
const (
	AdminSecret    = "jumpmesh-admin"
	AdminConfigKey = "admin.yaml"
)

// SaveAdminConfig writes the admin's client config to AdminSecret,
// replacing one left by an earlier admin. It implements
// coordinator.AdminConfigKeeper.
func (s *Store) SaveAdminConfig(ctx context.Context, config []byte) (string, error) {
	secrets := s.core.CoreV1().Secrets(s.ns)
	obj := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: AdminSecret, Labels: map[string]string{credentialsLabel: "admin"}},
		Data:       map[string][]byte{AdminConfigKey: config},
	}
	_, err := secrets.Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = secrets.Update(ctx, obj, metav1.UpdateOptions{})
	}
	if err != nil {
		return "", fmt.Errorf("write secret %s: %w", AdminSecret, err)
	}
	return fmt.Sprintf("secret %s/%s, key %s", s.ns, AdminSecret, AdminConfigKey), nil
}
