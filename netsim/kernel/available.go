package kernel

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrUnavailable means this machine cannot build a lab: not root, or a tool
// is missing. Tests skip on it.
var ErrUnavailable = errors.New("kernel lab unavailable")

// tools are the programs a lab runs: ip and tc (iproute2), nft (nftables)
// and iptables (only for the NFQUEUE target, which this kernel has only as
// an xtables target).
var tools = []string{"ip", "tc", "nft", "iptables"}

// Available reports why this machine cannot build a lab, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root to create network namespaces (run the tests as root)", ErrUnavailable)
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not found; install them with test/install-netsim-deps.sh", ErrUnavailable, strings.Join(missing, ", "))
	}
	return nil
}
