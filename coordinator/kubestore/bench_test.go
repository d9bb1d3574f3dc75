package kubestore

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/store/boltstore"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/jumpmesh/jumpmesh/test/k8s/controlplane"
	"github.com/stretchr/testify/require"
)

// BenchmarkLeaseThroughput runs whole leases (create, wait until ready,
// release) through one coordinator, workers at once, each on its own
// exporter, on the embedded store (the baseline) and on this one.
func BenchmarkLeaseThroughput(b *testing.B) {
	const workers = 8
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"embedded", func(b *testing.B) store.Store {
			st, err := boltstore.Open(filepath.Join(b.TempDir(), "store.db"))
			require.NoError(b, err)
			return st
		}},
		{"kubernetes", func(b *testing.B) store.Store {
			needPlane(b)
			st, err := New(b.Context(), Options{Namespace: newNamespace(b), RESTConfig: plane.RESTConfig(), Logger: quietLogger()})
			require.NoError(b, err)
			return st
		}},
	}
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			st := s.open(b)
			defer st.Close()
			c, err := coordinator.New(b.Context(), coordinator.Config{Store: st, Logger: quietLogger()})
			require.NoError(b, err)
			defer c.Close()
			r := []*replica{{st: nil, c: c}}
			lab(b, r, workers, workers)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range workers {
				wg.Go(func() {
					who := clientID(w)
					for next.Add(1) <= int64(b.N) {
						l, err := c.CreateLease(b.Context(), who, &coordinatorv1.CreateLeaseRequest{Exporter: fmt.Sprintf("e%d", w)})
						if err != nil {
							b.Error(err)
							return
						}
						if err := waitReady(b.Context(), c, who, l.GetMetadata().GetName()); err != nil {
							b.Error(err)
							return
						}
						if _, err := c.DeleteLease(b.Context(), who, l.GetMetadata().GetName()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leases/s")
		})
	}
}

// TestScriptBuildsThePinnedVersion: the build script and the tests agree
// on the Kubernetes version.
func TestScriptBuildsThePinnedVersion(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(repo, "test", "k8s", "build-apiserver.sh"))
	require.NoError(t, err)
	m := regexp.MustCompile(`K8S_VERSION="\$\{K8S_VERSION:-(v[0-9.]+)\}"`).FindSubmatch(script)
	require.NotNil(t, m, "K8S_VERSION default not found in build-apiserver.sh")
	require.Equal(t, controlplane.Version, string(m[1]))
}
