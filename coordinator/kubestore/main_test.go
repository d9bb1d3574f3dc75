package kubestore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/test/k8s/controlplane"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The tests share one control plane, started once: the API server takes
// seconds to start and delays the first object of a new CRD by two.
var (
	plane   *controlplane.ControlPlane
	noPlane error // why there is none: the tests skip with it
	repo    string
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := controlplane.Assets(); err != nil {
		if os.Getenv("CI") != "" {
			// CI builds the binaries first; not finding them is a failure.
			fmt.Fprintln(os.Stderr, "kubestore:", err)
			return 1
		}
		noPlane = err
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kubestore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	plane, err = controlplane.Start(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubestore: start the control plane:", err)
		return 1
	}
	defer plane.Stop()
	if out, err := plane.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(repo, "deploy", "crds")); err != nil {
		fmt.Fprintln(os.Stderr, "kubestore: install the CRDs:", err, string(out))
		return 1
	}
	if _, err := plane.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=jumpmesh"); err != nil {
		fmt.Fprintln(os.Stderr, "kubestore: wait for the CRDs:", err)
		return 1
	}
	return m.Run()
}

// needPlane skips a test when the control plane binaries are not built.
func needPlane(t testing.TB) {
	t.Helper()
	if noPlane != nil {
		t.Skip(noPlane.Error())
	}
}

func coreClient(t testing.TB) kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(plane.RESTConfig())
	require.NoError(t, err)
	return cs
}

// newNamespace makes a namespace for one test, so tests start empty.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns, err := coreClient(t).CoreV1().Namespaces().Create(t.Context(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	return ns.Name
}

// openStore opens a store on namespace ns, closed when the test ends.
func openStore(t testing.TB, ns string) *Store {
	t.Helper()
	s, err := New(t.Context(), Options{Namespace: ns, RESTConfig: plane.RESTConfig(), Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
