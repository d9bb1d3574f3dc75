package boltstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator/store"
	"github.com/jumpmesh/jumpmesh/coordinator/store/storetest"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/stretchr/testify/require"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(filepath.Join(t.TempDir(), "store.db"))
		require.NoError(t, err)
		return s
	})
}

func TestReopenKeepsRecordsAndRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(path)
	require.NoError(t, err)
	c := &coordinatorv1.Client{Metadata: &coordinatorv1.ObjectMeta{Name: "c1", Labels: map[string]string{"team": "a"}}}
	require.NoError(t, s.Create(t.Context(), c))
	require.NoError(t, s.Close())

	s, err = Open(path)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Get(t.Context(), store.Clients, "c1")
	require.NoError(t, err)
	require.Equal(t, "a", got.GetMetadata().Labels["team"])
	next := &coordinatorv1.Client{Metadata: &coordinatorv1.ObjectMeta{Name: "c2"}}
	require.NoError(t, s.Create(t.Context(), next))
	require.Greater(t, next.Metadata.ResourceVersion, c.Metadata.ResourceVersion, "revisions keep growing across restarts")
}

func TestSecondOpenFailsClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	// bbolt's flock is per open file description, so a second open in one
	// process sees the lock as another process would.
	_, err = Open(path)
	require.ErrorContains(t, err, "another process holds it")
}

// crashEnv makes the test binary a writer that reports each acknowledged
// write and is then killed mid-stream.
const crashEnv = "BOLTSTORE_CRASH_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashWriter(path)
		return
	}
	os.Exit(m.Run())
}

func crashWriter(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	results := make(chan string)
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				name := fmt.Sprintf("l-%d-%d", w, i)
				obj := &coordinatorv1.Lease{Metadata: &coordinatorv1.ObjectMeta{Name: name}}
				if err := s.Create(context.Background(), obj); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				results <- name
			}
		}()
	}
	for name := range results {
		fmt.Println(name)
	}
}

// TestKillMidWriteLosesNothingAcknowledged kills a writer process with
// SIGKILL while it writes, then checks every write it had acknowledged.
func TestKillMidWriteLosesNothingAcknowledged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	const acks = 500
	var acked []string
	sc := bufio.NewScanner(out)
	for len(acked) < acks && sc.Scan() {
		acked = append(acked, strings.TrimSpace(sc.Text()))
	}
	require.Len(t, acked, acks, "the writer stopped early: %v", sc.Err())
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	s, err := Open(path)
	require.NoError(t, err)
	defer s.Close()
	for _, name := range acked {
		_, err := s.Get(t.Context(), store.Leases, name)
		require.NoError(t, err, "acknowledged write %s was lost", name)
	}
}
