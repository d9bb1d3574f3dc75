package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/netsim"
	"github.com/jumpmesh/jumpmesh/netsim/kernel"
	"github.com/stretchr/testify/require"
)

// coordinatorPort is where the coordinator listens in the kernel lab; its
// built-in relay takes the same port over UDP and the next one (UDP and
// TCP), its defaults.
const coordinatorPort = 8443

// natLab builds the kernel lab of a NAT test: the coordinator with its
// relay on the internet, the exporter behind the lab's router, the client
// (and the admin) behind the home router; then starts the coordinator and
// the exporter vb-1 there, and makes the client alice.
func natLab(t *testing.T, home, lab netsim.Site) (*lab, *kernel.Lab, []string) {
	t.Helper()
	if err := kernel.Available(); err != nil {
		t.Skipf("the kernel network lab is not available here: %v", err)
	}
	home.Name, lab.Name = "home", "lab"
	home.Hosts = []netsim.Host{{Name: "client"}}
	lab.Hosts = []netsim.Host{{Name: "exporter"}}
	topo := netsim.Topology{
		Seed:   1,
		Public: []netsim.Host{{Name: "server"}},
		Sites:  []netsim.Site{home, lab},
	}
	kl, err := kernel.Build(t.Context(), topo)
	require.NoError(t, err)
	t.Cleanup(func() { kl.Close() })
	host := func(name string) *kernel.Host {
		h, err := kl.Host(name)
		require.NoError(t, err)
		return h
	}
	server := host("server")
	l := newLabOn(t, labNet{
		coordinator: server.Namespace(),
		exporter:    host("exporter").Namespace(),
		client:      host("client").Namespace(),
		listen:      netip.AddrPortFrom(server.Addr, coordinatorPort).String(),
	})
	alice := l.client("alice")
	l.exporter("vb-1", "board=virtual")
	return l, kl, alice
}

// untilDirect waits, in the shell, for the session to go direct: the
// relay may win the first race, and the session moves once punching
// opens a path. 50 looks at 0.1 s, far beyond the punch schedule (3.2 s).
const untilDirect = `for i in $(seq 50); do j | grep -q '^session: direct' && break; sleep 0.1; done; `

// TestMeshNAT runs the real binaries in the kernel network lab, behind
// real Linux NAT: a session goes direct through two endpoint-independent
// NATs (with the routers dropping unsolicited packets, and with them
// letting them in, the conntrack trap's setting: no punch reaches either
// router before its own side's has left), is relayed over UDP between two
// symmetric NATs, where forcing a direct path fails and says why, and
// over TCP when the client's network drops UDP. Each session powers the
// board on and reads it back.
func TestMeshNAT(t *testing.T) {
	t.Parallel()
	eim := netsim.NAT{Filtering: netsim.AddressAndPortDependent}
	eimAccept := eim
	eimAccept.AcceptUnsolicited = true
	tests := []struct {
		name       string
		home, lab  netsim.Site
		script     string
		want       string // the path the last `j` reports
		directFail bool   // --path direct fails
	}{
		{name: "eim-drop-unsolicited", home: netsim.Site{NAT: eim}, lab: netsim.Site{NAT: eim},
			script: untilDirect, want: "direct"},
		{name: "eim-accept-unsolicited", home: netsim.Site{NAT: eimAccept}, lab: netsim.Site{NAT: eimAccept},
			script: untilDirect, want: "direct"},
		{name: "symmetric", home: netsim.Site{NAT: netsim.Symmetric}, lab: netsim.Site{NAT: netsim.Symmetric},
			want: "relayed over UDP", directFail: true},
		{name: "udp-blocked", home: netsim.Site{NAT: eim, Firewall: netsim.Firewall{BlockUDP: true}}, lab: netsim.Site{NAT: eim},
			want: "relayed over TCP", directFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, kl, alice := natLab(t, tt.home, tt.lab)
			r := l.meshShell(alice, []string{"-l", "board=virtual", "--path", "auto"},
				tt.script+"j power on; j power status; j | grep '^session:'")
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			require.Contains(t, r.stdout, "on since")
			require.True(t, strings.HasPrefix(lines[len(lines)-1], "session: "+tt.want+", rtt "),
				"want the session %s; stdout:\n%s\nstderr:\n%s", tt.want, r.stdout, r.stderr)
			t.Logf("%s: %s", tt.name, lines[len(lines)-1])
			if tt.want == "direct" {
				for _, site := range []string{"home", "lab"} {
					r, err := kl.Router(site)
					require.NoError(t, err)
					n, err := r.Packets(t.Context(), kernel.Unsolicited)
					require.NoError(t, err)
					require.Zero(t, n, "packets reached the %s router before a mapping let them in", site)
				}
			} else {
				require.NotContains(t, r.stderr, "session with vb-1: direct", "the session never went direct")
			}
			if tt.directFail {
				r := l.meshShell(alice, []string{"-l", "board=virtual", "--path", "direct"}, "j power status")
				require.NotEqual(t, 0, r.code, "stdout:\n%s", r.stdout)
				require.Contains(t, lastLine(r.stderr), "no direct path", "stderr:\n%s", r.stderr)
			}
		})
	}
}

// TestMeshNATPathDies: behind real Linux NATs, the direct path of a
// session in use dies (the client's router starts dropping UDP to the
// exporter's site; the relay stays reachable); the session moves to the
// relay by itself, the shell says so, and its command goes on.
func TestMeshNATPathDies(t *testing.T) {
	t.Parallel()
	eim := netsim.NAT{Filtering: netsim.AddressAndPortDependent}
	l, kl, alice := natLab(t, netsim.Site{NAT: eim}, netsim.Site{NAT: eim})
	sh := l.startShell(alice, []string{"-l", "board=virtual", "--path", "auto"},
		untilDirect+"j power on; touch ready; while [ ! -e go ]; do sleep 0.05; done; j power status; j | grep '^session:'")
	l.waitFor("the session to go direct", l.exists("ready"))
	_, stderr := sh.output(t)
	require.True(t, strings.HasPrefix(lastPath(stderr), "direct"), "stderr:\n%s", stderr)

	home, err := kl.Router("home")
	require.NoError(t, err)
	lab, err := kl.Router("lab")
	require.NoError(t, err)
	out, err := home.Command(t.Context(), "iptables", "-I", "FORWARD", "-p", "udp", "-d", lab.PublicAddr.String(), "-j", "DROP").CombinedOutput()
	require.NoError(t, err, "%s", out)
	cut := time.Now()
	l.waitFor("the session to move to the relay", func() bool {
		_, stderr := sh.output(t)
		return strings.HasPrefix(lastPath(stderr), "relayed over UDP")
	})
	t.Logf("the shell reported the move to the relay %v after the direct path died", time.Since(cut).Round(10*time.Millisecond))
	require.NoError(t, os.WriteFile(filepath.Join(l.dir, "go"), nil, 0o600))
	require.Equal(t, 0, sh.wait(t))
	stdout, _ := sh.output(t)
	require.Contains(t, stdout, "on since")
	require.Contains(t, stdout, "session: relayed over UDP")
}

// lastPath is the path the shell reported last on stderr.
func lastPath(stderr string) string {
	const prefix = "session with vb-1: "
	i := strings.LastIndex(stderr, prefix)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(stderr[i+len(prefix):], "\n")
	return line
}
