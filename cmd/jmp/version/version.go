// Package version holds the build's version, set by the Makefile's ldflags.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set at link time (-X); "dev" for a plain `go build`.
var Version = "dev"

// String describes the build for `jmp version`.
func String() string {
	commit := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = " " + s.Value
			}
		}
	}
	return fmt.Sprintf("jmp %s%s %s %s/%s", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
