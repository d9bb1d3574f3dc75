package kubestore

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/token"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// deployNamespace is where deploy/ puts jumpmesh.
const deployNamespace = "jumpmesh"

// The store keeps the admin's config itself when coordinator.Run uses it.
var _ coordinator.AdminConfigKeeper = (*Store)(nil)

// TestDeploy applies deploy/ to the API server and runs a coordinator with
// only the rights its Role grants (impersonating its service account):
// the Role must cover everything the store does, and nothing more is
// granted. A Client made with kubectl gets a working token in a Secret.
func TestDeploy(t *testing.T) {
	needPlane(t)
	ctx := t.Context()
	out, err := plane.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(repo, "deploy"))
	require.NoError(t, err, "%s", out)

	cfg := plane.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + deployNamespace + ":jumpmesh-coordinator"}
	st, err := New(ctx, Options{Namespace: deployNamespace, RESTConfig: cfg, Logger: quietLogger()})
	require.NoError(t, err)
	defer st.Close()
	c, err := coordinator.New(ctx, coordinator.Config{Store: st, Logger: quietLogger()})
	require.NoError(t, err)
	defer c.Close()

	// Every kind, every write: bootstrap admin and its Secret, identities,
	// a policy, a lease through its life.
	adminTok, _, err := c.BootstrapAdmin(ctx)
	require.NoError(t, err)
	_, err = st.SaveAdminConfig(ctx, []byte("token: "+adminTok+"\n"))
	require.NoError(t, err)
	adminSecret, err := coreClient(t).CoreV1().Secrets(deployNamespace).Get(ctx, AdminSecret, metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, string(adminSecret.Data[AdminConfigKey]), adminTok)
	_, _, err = c.CreateExporter(ctx, "board1", map[string]string{"board": "rpi4"})
	require.NoError(t, err)
	_, _, err = c.CreateClient(ctx, "dev1", nil)
	require.NoError(t, err)
	_, err = c.ApplyPolicy(ctx, &coordinatorv1.AccessPolicy{Metadata: &coordinatorv1.ObjectMeta{Name: "open"},
		Rules: []*coordinatorv1.AccessRule{{Priority: 1}}})
	require.NoError(t, err)
	online(t, c, "board1")
	dev1 := coordinator.Identity{Kind: token.Client, Name: "dev1"}
	l, err := c.CreateLease(ctx, dev1, &coordinatorv1.CreateLeaseRequest{Selector: "board=rpi4"})
	require.NoError(t, err)
	require.NoError(t, waitReady(ctx, c, dev1, l.GetMetadata().GetName()))
	_, err = c.DeleteLease(ctx, dev1, l.GetMetadata().GetName())
	require.NoError(t, err)
	_, err = c.RotateSigningKey(ctx)
	require.NoError(t, err)
	require.NoError(t, c.DeleteExporter(ctx, "board1"))

	// Nothing beyond its namespace.
	sa, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	_, err = sa.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "secrets of another namespace: %v", err)

	// A client made with kubectl.
	credCtx, stopCred := context.WithCancel(ctx)
	credDone := make(chan struct{})
	go func() {
		defer close(credDone)
		st.RunCredentials(credCtx, CredentialsOptions{Issuer: c, Endpoint: "https://jumpmesh.example:443", CAFingerprint: "sha256:00"})
	}()
	defer func() {
		stopCred()
		<-credDone
	}()
	manifest := filepath.Join(t.TempDir(), "client.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte("apiVersion: jumpmesh.dev/v1alpha1\nkind: Client\nmetadata:\n  name: ci-bot\n  labels: {team: ci}\n"), 0o600))
	out, err = plane.Kubectl(ctx, "apply", "-n", deployNamespace, "-f", manifest)
	require.NoError(t, err, "%s", out)

	secrets := coreClient(t).CoreV1().Secrets(deployNamespace)
	var tok []byte
	require.Eventually(t, func() bool {
		s, err := secrets.Get(ctx, CredentialsSecret(token.Client, "ci-bot"), metav1.GetOptions{})
		if err != nil {
			return false
		}
		tok = s.Data[TokenKey]
		return len(tok) > 0 && len(s.Data[ClientConfigKey]) > 0
	}, settle, 50*time.Millisecond, "no credentials Secret for the client made with kubectl")
	h := http.Header{}
	h.Set("Authorization", "Bearer "+string(tok))
	who, err := c.Authenticate(h, token.Client)
	require.NoError(t, err, "the issued token must authenticate")
	require.Equal(t, coordinator.Identity{Kind: token.Client, Name: "ci-bot"}, who)
	cl, err := c.GetClient("ci-bot")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "ci"}, cl.GetMetadata().GetLabels())

	out, err = plane.Kubectl(ctx, "get", "-n", deployNamespace, "clients.jumpmesh.dev", "ci-bot")
	require.NoError(t, err)
	require.Contains(t, string(out), CredentialsSecret(token.Client, "ci-bot"))
	t.Logf("kubectl get clients.jumpmesh.dev ci-bot:\n%s", out)
}
