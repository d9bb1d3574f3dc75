package kernel_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jumpmesh/jumpmesh/netsim/kernel"
)

// Sweep removes what a killed run left (its namespaces and the processes in
// them) and leaves live runs' namespaces alone.
func TestSweepRemovesOnlyDeadRunsNamespaces(t *testing.T) {
	if err := kernel.Available(); err != nil {
		t.Skipf("kernel lab test skipped: %v", err)
	}
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	stale := fmt.Sprintf("jmk%d-5eed00-inet", gone.ProcessState.Pid())
	live := fmt.Sprintf("jmk%d-5eed00-inet", os.Getpid())
	for _, ns := range []string{stale, live} {
		require.NoError(t, exec.Command("ip", "netns", "add", ns).Run())
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	}
	leftover := exec.Command("ip", "netns", "exec", stale, "sleep", "300")
	require.NoError(t, leftover.Start())
	// ip enters the namespace after it starts; until then there is nothing
	// in the namespace to kill.
	require.Eventually(t, func() bool {
		out, err := exec.Command("ip", "netns", "pids", stale).Output()
		return err == nil && slices.Contains(strings.Fields(string(out)), strconv.Itoa(leftover.Process.Pid))
	}, 5*time.Second, 5*time.Millisecond, "the leftover process never entered the namespace")

	require.NoError(t, kernel.Sweep(t.Context()))

	left := listNamespaces(t)
	require.NotContains(t, left, stale)
	require.Contains(t, left, live)
	waited := make(chan error, 1)
	go func() { waited <- leftover.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-time.After(5 * time.Second):
		_ = leftover.Process.Kill()
		<-waited
		t.Fatal("the process left in the stale namespace is still running after Sweep")
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the process left in the stale namespace should have been killed")
	require.False(t, exit.Exited(), "killed by a signal, not exited: %v", err)
}
