package mesh

import "fmt"

// Path is the way a session's packets go.
type Path int

const (
	// PathNone: no connection right now.
	PathNone Path = iota
	// PathDirect: peer to peer over UDP.
	PathDirect
	// PathRelayUDP: through the relay, this side's leg over UDP.
	PathRelayUDP
	// PathRelayTCP: through the relay, this side's leg over TLS over TCP.
	PathRelayTCP
)

func (p Path) String() string {
	switch p {
	case PathNone:
		return "none"
	case PathDirect:
		return "direct"
	case PathRelayUDP:
		return "relay-udp"
	case PathRelayTCP:
		return "relay-tcp"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Relayed reports whether the path goes through the relay.
func (p Path) Relayed() bool { return p == PathRelayUDP || p == PathRelayTCP }

// PathPolicy is which paths a client may use: `--path auto|direct|relay`.
type PathPolicy int

const (
	// Auto uses whichever path opens first and moves to a direct one when
	// it can, back to the relay when the direct one dies.
	Auto PathPolicy = iota
	// DirectOnly never relays: no direct path is an error.
	DirectOnly
	// RelayOnly never punches: every packet goes through the relay.
	RelayOnly
)

func (p PathPolicy) String() string {
	switch p {
	case Auto:
		return "auto"
	case DirectOnly:
		return "direct"
	case RelayOnly:
		return "relay"
	}
	return fmt.Sprintf("PathPolicy(%d)", int(p))
}

// ParsePathPolicy reads "auto", "direct" or "relay".
func ParsePathPolicy(s string) (PathPolicy, error) {
	switch s {
	case "auto", "":
		return Auto, nil
	case "direct":
		return DirectOnly, nil
	case "relay":
		return RelayOnly, nil
	}
	return Auto, fmt.Errorf("path %q: want auto, direct or relay", s)
}
