// Package e2e runs the real jmp binary, as users and scripts do: local
// mode, the coordinator and exporters as processes on loopback.
//
// The coordinator tests run against the embedded store, or with
// JUMPMESH_E2E_STORE=kubernetes against the Kubernetes store on a real API
// server (test/k8s/controlplane), started once for the package.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/test/k8s/controlplane"
)

// jmp is the binary under test, built once for the package; j links to it.
var jmp string

// repoRoot is the module's folder, where examples/ live.
var repoRoot string

// storeEnv picks the coordinator's store: embedded (the default) or
// kubernetes.
const storeEnv = "JUMPMESH_E2E_STORE"

var (
	// kube is the control plane the coordinators keep their records on;
	// nil for the embedded store.
	kube *controlplane.ControlPlane
	// noKube says why the Kubernetes store tests skip: the binaries are
	// not built (never so in CI, which builds them).
	noKube error
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "jmp-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	jmp = filepath.Join(dir, "jmp")
	args := []string{"build", "-o", jmp}
	if raceEnabled {
		// The processes under test then report their own data races. A
		// race fails the process at once (halt_on_error), and exiting
		// does not wait a second for late reports (atexit_sleep_ms): the
		// tests run jmp and j hundreds of times.
		args = append(args, "-race")
		if err := os.Setenv("GORACE", "halt_on_error=1 atexit_sleep_ms=0"); err != nil {
			return 0, err
		}
	}
	build := exec.Command("go", append(args, "./cmd/jmp")...)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build jmp: %v\n%s", err, out)
	}
	if err := os.Symlink("jmp", filepath.Join(dir, "j")); err != nil {
		return 0, err
	}
	switch st := os.Getenv(storeEnv); st {
	case "", "embedded":
	case "kubernetes":
		stop, err := startKube(dir)
		if err != nil {
			return 0, err
		}
		defer stop()
	default:
		return 0, fmt.Errorf("%s=%q: pick embedded or kubernetes", storeEnv, st)
	}
	return m.Run(), nil
}

// startKube starts the control plane in dir and installs the CRDs, once:
// the API server takes seconds to start and delays the first object of a
// new CRD by two.
func startKube(dir string) (stop func(), err error) {
	if _, err := controlplane.Assets(); err != nil {
		if os.Getenv("CI") != "" {
			return nil, fmt.Errorf("%w; CI must build them first (make deps)", err)
		}
		noKube = err
		return func() {}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	planeDir := filepath.Join(dir, "k8s")
	if err := os.Mkdir(planeDir, 0o700); err != nil {
		return nil, err
	}
	cp, err := controlplane.Start(ctx, planeDir)
	if err != nil {
		return nil, fmt.Errorf("start the Kubernetes control plane: %w", err)
	}
	crds := filepath.Join(repoRoot, "deploy", "crds")
	if out, err := cp.Kubectl(ctx, "apply", "--server-side", "-k", crds); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("install the CRDs: %w: %s", err, out)
	}
	if _, err := cp.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=jumpmesh"); err != nil {
		cp.Stop()
		return nil, fmt.Errorf("wait for the CRDs: %w", err)
	}
	kube = cp
	return func() { _ = cp.Stop() }, nil
}
