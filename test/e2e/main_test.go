// Package e2e runs the real jmp binary, as users and scripts do: local
// mode, the coordinator and exporters as processes on loopback.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// jmp is the binary under test, built once for the package; j links to it.
var jmp string

// repoRoot is the module's folder, where examples/ live.
var repoRoot string

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
		// The processes under test then report their own data races.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/jmp")...)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build jmp: %v\n%s", err, out)
	}
	if err := os.Symlink("jmp", filepath.Join(dir, "j")); err != nil {
		return 0, err
	}
	return m.Run(), nil
}
