package drivers

import (
	"fmt"
	"strings"
	"time"

	"github.com/docker/go-units"
	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "500ms", "2s" or "1m30s" in configs.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration; write it like 500ms, 2s or 1m30s", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written as "4096", "64Mi", "64MiB" or "1G" in
// configs; the multiples are binary (1Ki = 1K = 1024), as for disks and RAM.
type Size int64

// UnmarshalYAML parses a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	value := n.Value
	if strings.HasSuffix(value, "i") {
		value += "B" // go-units knows "64MiB" but not the Kubernetes "64Mi"
	}
	v, err := units.RAMInBytes(value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a size; write it like 4096, 64Mi or 1Gi", n.Line, n.Value)
	}
	*s = Size(v)
	return nil
}
