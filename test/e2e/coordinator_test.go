package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Coordinator timings for these tests: short, so exporters are found
// offline and leases lost within seconds.
var coordTimings = []string{"--heartbeat-interval", "500ms", "--exporter-grace", "3s", "--preemption-notice", "1s"}

// relayPorts puts the coordinator's built-in relay on ports of the
// system's choosing: tests run side by side.
var relayPorts = []string{"--relay-udp", "127.0.0.1:0", "--relay-probe-udp", "127.0.0.1:0", "--relay-tcp", "127.0.0.1:0"}

// waitTimeout bounds every wait for the lab to reach a state.
const waitTimeout = 30 * time.Second

// proc is a long-running jmp process (coordinator or exporter) whose output
// goes to a log file, shown if the test fails. It is killed when the test
// ends.
type proc struct {
	t    *testing.T
	name string
	ns   string // network namespace; "" for the test's own
	args []string
	env  []string // added to the test's environment
	dir  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, name, dir string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, name, dir, nil, args...)
}

func startProcEnv(t *testing.T, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, "", name, dir, env, args...)
}

// startProcIn starts the process inside the network namespace ns.
func startProcIn(t *testing.T, ns, name, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, ns: ns, args: args, env: env, dir: dir, log: filepath.Join(dir, name+".log")}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("--- %s log ---\n%s", name, data)
		}
	})
	return p
}

func (p *proc) start() {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(p.t, err)
	defer f.Close()
	p.cmd = jmpCommand(context.Background(), p.ns, p.args...)
	p.cmd.Dir = p.dir
	if p.env != nil {
		p.cmd.Env = append(os.Environ(), p.env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	require.NoError(p.t, p.cmd.Start())
	p.done = make(chan struct{})
	cmd, done := p.cmd, p.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
}

// kill ends the process at once, as a crash or power loss would.
func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// restart starts the process again with the same arguments.
func (p *proc) restart() {
	p.kill()
	p.start()
}

func (p *proc) output() string {
	data, err := os.ReadFile(p.log)
	require.NoError(p.t, err)
	return string(data)
}

// lab is a coordinator with its admin config, and the clients and
// exporters a test makes.
type lab struct {
	t      *testing.T
	net    labNet
	dir    string
	addr   string
	coord  *proc
	admin  []string // env for admin commands
	boards string   // a folder with board.yaml
	// namespace holds the records with the Kubernetes store; empty with
	// the embedded one.
	namespace string
}

// labNet says where a lab's processes run: all on loopback (the zero
// value), or on the hosts of a kernel network lab.
type labNet struct {
	// The network namespaces of the coordinator (with its relay), of
	// exporters, and of clients and the admin; "" for the test's own.
	coordinator, exporter, client string
	// listen is the coordinator's address; by default a free loopback
	// port, with the relay's ports picked by the system.
	listen string
}

func newLab(t *testing.T, extra ...string) *lab {
	t.Helper()
	return newLabOn(t, labNet{}, extra...)
}

// newLabOn starts a lab placed as ln says.
func newLabOn(t *testing.T, ln labNet, extra ...string) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{t: t, net: ln, dir: dir, addr: ln.listen, boards: board(t)}
	args := append([]string{"coordinator", "--data-dir", filepath.Join(dir, "data")}, coordTimings...)
	if l.addr == "" {
		free, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		l.addr = free.Addr().String()
		require.NoError(t, free.Close())
		args = append(args, relayPorts...)
	}
	args = append(args, "--listen", l.addr)
	var env []string
	if os.Getenv(storeEnv) == "kubernetes" {
		if noKube != nil {
			t.Skipf("the Kubernetes store needs a control plane: %v", noKube)
		}
		l.namespace = kubeNamespace(t)
		args = append(args, "--store", "kubernetes", "--namespace", l.namespace)
		env = []string{"KUBECONFIG=" + kube.Kubeconfig}
		t.Cleanup(func() {
			// What the coordinator recovered, across restarts too, came
			// from the API server.
			_, err := os.Stat(filepath.Join(dir, "data", "store.db"))
			require.ErrorIs(t, err, os.ErrNotExist, "the coordinator made an embedded store")
		})
	}
	l.coord = startProcIn(t, ln.coordinator, "coordinator", dir, env, append(args, extra...)...)
	l.admin = []string{"JMP_CLIENT_CONFIG=" + l.adminConfig(), "XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg")}
	l.waitHealthy()
	return l
}

// adminConfig is where the lab's admin client config is: the coordinator
// writes it there with the embedded store; with the Kubernetes store the
// lab copies it there from the Secret, as an admin would.
func (l *lab) adminConfig() string { return filepath.Join(l.dir, "data", "admin.yaml") }

// kubeNamespace makes a namespace for one test's coordinator, named after
// the test, so tests start empty; kubectl shows what a failed one left.
func kubeNamespace(t *testing.T) string {
	t.Helper()
	name := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = fmt.Sprintf("%.50s-%d", name, time.Now().UnixNano()%100000)
	out, err := kube.Kubectl(t.Context(), "create", "namespace", name)
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		if t.Failed() {
			out, err := kube.Kubectl(context.Background(), "get", "-n", name, "-o", "wide",
				"exporters.jumpmesh.dev,clients.jumpmesh.dev,leases.jumpmesh.dev,accesspolicies.jumpmesh.dev,secrets")
			t.Logf("--- kubectl get -n %s (err %v) ---\n%s", name, err, out)
		}
	})
	return name
}

// nonName matches what may not be in a namespace name.
var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// fetchAdminConfig copies the admin config from its Secret to
// adminConfig, once the coordinator has written it.
func (l *lab) fetchAdminConfig() bool {
	out, err := kube.Kubectl(l.t.Context(), "get", "secret", "-n", l.namespace, "jumpmesh-admin", "-o", `jsonpath={.data.admin\.yaml}`)
	if err != nil || len(out) == 0 {
		return false
	}
	data, err := base64.StdEncoding.DecodeString(string(out))
	require.NoError(l.t, err)
	require.NoError(l.t, os.MkdirAll(filepath.Dir(l.adminConfig()), 0o700))
	require.NoError(l.t, os.WriteFile(l.adminConfig(), data, 0o600))
	return true
}

// kubectl runs kubectl in the lab's namespace and requires success.
func (l *lab) kubectl(args ...string) string {
	l.t.Helper()
	out, err := kube.Kubectl(l.t.Context(), append([]string{"-n", l.namespace}, args...)...)
	require.NoError(l.t, err)
	return string(out)
}

// secretData waits for a Secret in the lab's namespace and returns its
// data.
func (l *lab) secretData(name string) map[string][]byte {
	l.t.Helper()
	var secret struct {
		Data map[string][]byte `json:"data"`
	}
	l.waitFor("secret "+name, func() bool {
		out, err := kube.Kubectl(l.t.Context(), "-n", l.namespace, "get", "secret", name, "-o", "json")
		return err == nil && json.Unmarshal(out, &secret) == nil
	})
	return secret.Data
}

// waitHealthy waits for the coordinator to answer its health check and
// for its admin config to exist.
func (l *lab) waitHealthy() {
	l.t.Helper()
	if l.net.client != "" {
		// The test's process has no route into the lab: ask as the admin.
		l.waitFor("the coordinator to answer", func() bool {
			_, err := os.Stat(l.adminConfig())
			return err == nil && runIn(l.t, l.net.client, l.dir, l.admin, "get", "exporters").code == 0
		})
		return
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		// A probe only; the CLI checks the certificate's fingerprint.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer hc.CloseIdleConnections()
	l.waitFor("the coordinator to be healthy", func() bool {
		resp, err := hc.Get("https://" + l.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		if _, err := os.Stat(l.adminConfig()); err == nil {
			return true
		}
		return l.namespace != "" && l.fetchAdminConfig()
	})
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func (l *lab) waitFor(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a stand-in for the condition
	}
}

// jmp runs a jmp command as the given environment and requires success.
func (l *lab) jmp(env []string, args ...string) string {
	l.t.Helper()
	r := runIn(l.t, l.net.client, l.dir, env, args...)
	require.Equal(l.t, 0, r.code, "jmp %s failed: %s", strings.Join(args, " "), r.stderr)
	return r.stdout
}

// fail runs a jmp command that must fail and returns its one-line error.
func (l *lab) fail(env []string, args ...string) string {
	l.t.Helper()
	r := runIn(l.t, l.net.client, l.dir, env, args...)
	require.NotEqual(l.t, 0, r.code, "jmp %s should have failed; printed %s", strings.Join(args, " "), r.stdout)
	// Progress lines (--wait) may come first; the error is the last line,
	// and one line.
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	msg := lines[len(lines)-1]
	require.True(l.t, strings.HasPrefix(msg, "jmp: "), "the error is one line starting with 'jmp: '; got:\n%s", r.stderr)
	for _, line := range lines[:len(lines)-1] {
		require.True(l.t, strings.HasPrefix(line, "lease "), "only progress lines come before the error; got:\n%s", r.stderr)
	}
	return msg
}

// client creates a client identity and returns the env to act as it.
func (l *lab) client(name string, labels ...string) []string {
	l.t.Helper()
	path := filepath.Join(l.dir, name+".yaml")
	args := []string{"admin", "create", "client", name, "-o", path}
	for _, lb := range labels {
		args = append(args, "--label", lb)
	}
	l.jmp(l.admin, args...)
	return []string{"JMP_CLIENT_CONFIG=" + path, "XDG_CONFIG_HOME=" + filepath.Join(l.dir, "xdg-"+name)}
}

// exporter creates an exporter identity with the virtual board's drivers,
// starts `jmp run` for it, and waits until it is online.
func (l *lab) exporter(name string, labels ...string) *proc {
	l.t.Helper()
	path := filepath.Join(l.boards, name+".yaml")
	args := []string{"admin", "create", "exporter", name, "--export-from", filepath.Join(l.boards, "board.yaml"), "-o", path}
	for _, lb := range labels {
		args = append(args, "--label", lb)
	}
	l.jmp(l.admin, args...)
	p := startProcIn(l.t, l.net.exporter, "exporter-"+name, l.boards, nil, "run", "--exporter-config", path)
	l.waitFor("exporter "+name+" to be online", func() bool { return l.exporterStatus(name) == "available" })
	return p
}

type exporterJSON struct {
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status string `json:"status"`
	Lease  string `json:"lease"`
}

// exporterStatus is "available", "leased", "offline" or "lost".
func (l *lab) exporterStatus(name string) string {
	var e exporterJSON
	require.NoError(l.t, json.Unmarshal([]byte(l.jmp(l.admin, "get", "exporters", name, "-o", "json")), &e))
	return strings.ToLower(strings.TrimPrefix(e.Status, "EXPORTER_STATUS_"))
}

type leaseJSON struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Client string `json:"client"`
	} `json:"spec"`
	Status struct {
		State     string    `json:"state"`
		Reason    string    `json:"reason"`
		Exporter  string    `json:"exporter"`
		BeginTime time.Time `json:"beginTime"`
		EndTime   time.Time `json:"endTime"`
	} `json:"status"`
}

func (l *lab) lease(env []string, name string) leaseJSON {
	l.t.Helper()
	var out leaseJSON
	require.NoError(l.t, json.Unmarshal([]byte(l.jmp(env, "get", "leases", name, "-o", "json")), &out))
	return out
}

// waitLease waits for a lease to reach a state, with a reason.
func (l *lab) waitLease(env []string, name, state, reason string) leaseJSON {
	l.t.Helper()
	var got leaseJSON
	l.waitFor(fmt.Sprintf("lease %s to be %s (%s)", name, state, reason), func() bool {
		got = l.lease(env, name)
		return got.Status.State == "LEASE_STATE_"+state && got.Status.Reason == "LEASE_REASON_"+reason
	})
	return got
}

func TestCoordinatorLeaseLifecycle(t *testing.T) {
	l := newLab(t)
	alice, bob := l.client("alice"), l.client("bob")
	exp1 := l.exporter("vb-1", "board=virtual", "slot=1")
	l.exporter("vb-2", "board=virtual", "slot=2")

	// Alice waits for a lease and gets one at once.
	name := strings.TrimSpace(l.jmp(alice, "create", "lease", "--exporter", "vb-1", "--duration", "1h", "--wait", "-o", "name"))
	first := l.lease(alice, name)
	require.Equal(t, "LEASE_STATE_READY", first.Status.State)
	require.Equal(t, "vb-1", first.Status.Exporter)
	l.waitFor("the exporter to learn its lease", func() bool { return strings.Contains(exp1.output(), "lease="+name) })

	// Bob's wait gives up and withdraws his lease.
	msg := l.fail(bob, "create", "lease", "--exporter", "vb-1", "--wait", "1s")
	require.Contains(t, msg, "was not ready within 1s (all busy)")
	require.Contains(t, msg, "withdrawn")

	// Bob queues; a selector lease takes the free board meanwhile.
	queued := strings.TrimSpace(l.jmp(bob, "create", "lease", "--exporter", "vb-1", "-o", "name"))
	other := strings.TrimSpace(l.jmp(bob, "create", "lease", "-l", "board=virtual,slot in (1,2)", "--wait", "-o", "name"))
	require.Equal(t, "vb-2", l.lease(bob, other).Status.Exporter)
	l.waitLease(bob, queued, "PENDING", "ALL_BUSY")
	require.Contains(t, l.jmp(bob, "get", "leases"), "all busy")

	// Extend: the end moves by 30m.
	l.jmp(alice, "update", "lease", name, "--extend", "30m")
	extended := l.lease(alice, name)
	require.Equal(t, 30*time.Minute, extended.Status.EndTime.Sub(first.Status.EndTime))

	// Hand it to Bob: Alice no longer sees it.
	l.jmp(alice, "update", "lease", name, "--to-client", "bob")
	require.Equal(t, "bob", l.lease(bob, name).Spec.Client)
	require.Contains(t, l.fail(alice, "get", "leases", name), "not found")
	require.NotContains(t, l.jmp(alice, "get", "leases"), name)

	// Bob releases it: the next in line, his queued lease, gets vb-1.
	l.jmp(bob, "delete", "lease", name)
	l.waitLease(bob, queued, "READY", "ACQUIRED")
	require.Equal(t, "leased", l.exporterStatus("vb-1"))
	require.Contains(t, l.jmp(bob, "get", "leases", "--all"), "released")
	l.jmp(bob, "delete", "lease", queued, other)
	l.waitFor("vb-1 to be free", func() bool { return l.exporterStatus("vb-1") == "available" })
}

func TestCoordinatorRestartMidLease(t *testing.T) {
	l := newLab(t)
	alice := l.client("alice")
	exp := l.exporter("vb-1", "board=virtual")
	name := strings.TrimSpace(l.jmp(alice, "create", "lease", "-l", "board=virtual", "--duration", "1h", "--wait", "-o", "name"))
	l.waitFor("the exporter to serve the lease", func() bool { return strings.Contains(exp.output(), "serving lease") })

	// Crash the coordinator mid-lease, and start it again.
	l.coord.restart()
	l.waitHealthy()
	require.Equal(t, "LEASE_STATE_READY", l.lease(alice, name).Status.State, "the lease survives the restart")
	// The exporter reconnects by itself and comes back to the same lease.
	l.waitFor("the exporter to reconnect", func() bool { return l.exporterStatus("vb-1") == "leased" })
	l.waitFor("the exporter to hear its lease again", func() bool {
		return strings.Count(exp.output(), "serving lease") >= 2
	})
	require.Contains(t, exp.output(), "reconnecting")
	ready := l.lease(alice, name)
	require.Equal(t, "LEASE_STATE_READY", ready.Status.State)
	require.Equal(t, "vb-1", ready.Status.Exporter)
}

func TestCoordinatorExporterKilledMidLease(t *testing.T) {
	l := newLab(t)
	alice := l.client("alice")
	exp := l.exporter("vb-1", "board=virtual")
	name := strings.TrimSpace(l.jmp(alice, "create", "lease", "--exporter", "vb-1", "--duration", "1h", "--wait", "-o", "name"))
	l.waitFor("the exporter to serve the lease", func() bool { return strings.Contains(exp.output(), "lease="+name) })

	// Killed and back within the grace period: same lease.
	exp.restart()
	l.waitFor("the restarted exporter to serve its lease", func() bool {
		return l.exporterStatus("vb-1") == "leased" && strings.Count(exp.output(), "lease="+name) >= 2
	})
	require.Equal(t, "LEASE_STATE_READY", l.lease(alice, name).Status.State)

	// Killed for good: offline at once, the lease ends after the grace.
	exp.kill()
	l.waitFor("vb-1 to be lost", func() bool { return l.exporterStatus("vb-1") == "lost" })
	l.waitLease(alice, name, "ENDED", "EXPORTER_LOST")
	require.Equal(t, "offline", l.exporterStatus("vb-1"))
}

func TestCoordinatorExpiry(t *testing.T) {
	l := newLab(t)
	alice := l.client("alice")
	exp := l.exporter("vb-1", "board=virtual")
	name := strings.TrimSpace(l.jmp(alice, "create", "lease", "--exporter", "vb-1", "--duration", "2s", "--wait", "-o", "name"))
	l.waitLease(alice, name, "ENDED", "EXPIRED")
	l.waitFor("the exporter to be told", func() bool {
		return strings.Contains(exp.output(), "lease ended") && strings.Contains(exp.output(), "EXPIRED")
	})
	require.Equal(t, "available", l.exporterStatus("vb-1"))
	// Shortening into the past is refused, not done silently.
	name = strings.TrimSpace(l.jmp(alice, "create", "lease", "--exporter", "vb-1", "--duration", "1h", "--wait", "-o", "name"))
	msg := l.fail(alice, "update", "lease", name, "--duration", "1ms")
	require.Contains(t, msg, "jmp delete lease "+name)
}

func TestCoordinatorPreemption(t *testing.T) {
	l := newLab(t)
	policy := filepath.Join(l.dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(`apiVersion: jumpmesh.dev/v1alpha1
kind: AccessPolicy
metadata: {name: boards}
exporterSelector: board=virtual
rules:
  - {clientSelector: team=a, priority: 10}
  - {priority: 1, preemptible: true}
`), 0o600))
	l.jmp(l.admin, "admin", "create", "policy", "boards", "-f", policy)
	require.Contains(t, l.jmp(l.admin, "admin", "get", "policies"), "spot")
	alice, guest := l.client("alice", "team=a"), l.client("guest")
	l.exporter("vb-1", "board=virtual")

	spot := strings.TrimSpace(l.jmp(guest, "create", "lease", "-l", "board=virtual", "--duration", "1h", "--wait", "-o", "name"))
	// Alice's priority lease preempts the spot lease after its notice.
	vip := strings.TrimSpace(l.jmp(alice, "create", "lease", "-l", "board=virtual", "--wait=30s", "-o", "name"))
	require.Equal(t, "vb-1", l.lease(alice, vip).Status.Exporter)
	l.waitLease(guest, spot, "ENDED", "PREEMPTED")
}

func TestCoordinatorPolicyDenial(t *testing.T) {
	l := newLab(t)
	l.jmp(l.admin, "admin", "create", "policy", "boards", "--exporters", "board=virtual", "--clients", "team=a", "--max-duration", "1h")
	alice, bob := l.client("alice", "team=a"), l.client("bob", "team=b")
	l.exporter("vb-1", "board=virtual")
	require.Contains(t, l.fail(bob, "create", "lease", "-l", "board=virtual"), "no access policy lets client bob")
	require.Contains(t, l.fail(alice, "create", "lease", "-l", "board=virtual", "--duration", "2h"), "over the 1h0m0s maximum")
	name := strings.TrimSpace(l.jmp(alice, "create", "lease", "-l", "board=virtual", "--duration", "50m", "--wait", "-o", "name"))
	require.Contains(t, l.fail(alice, "update", "lease", name, "--extend", "20m"), "maximum")
	require.Contains(t, l.fail(alice, "update", "lease", name, "--to-client", "bob"), "no access policy")
}

func TestCoordinatorBadInput(t *testing.T) {
	l := newLab(t)
	alice := l.client("alice")
	l.exporter("vb-1", "board=virtual")
	cfg := filepath.Join(l.dir, "alice.yaml")
	data, err := os.ReadFile(cfg)
	require.NoError(t, err)
	withConfig := func(name, old, new string) []string {
		path := filepath.Join(l.dir, name)
		require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o600))
		return []string{"JMP_CLIENT_CONFIG=" + path}
	}
	_, port, _ := net.SplitHostPort(l.addr)
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downAddr := down.Addr().String()
	require.NoError(t, down.Close())

	var wrongFP []string
	for _, line := range strings.Split(string(data), "\n") {
		if fp, ok := strings.CutPrefix(strings.TrimSpace(line), "caFingerprint: sha256:"); ok {
			wrongFP = withConfig("wrong-fp.yaml", fp, strings.Repeat("0", len(fp)))
		}
	}
	require.NotNil(t, wrongFP, "alice.yaml has a fingerprint")

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unreachable coordinator", withConfig("down.yaml", port, strings.Split(downAddr, ":")[1]), []string{"get", "leases"}, "cannot reach the coordinator"},
		{"wrong CA fingerprint", wrongFP, []string{"get", "leases"}, "but the config trusts"},
		{"selector that does not parse", alice, []string{"create", "lease", "-l", "board in virtual"}, "does not parse"},
		{"exporter that does not exist", alice, []string{"create", "lease", "--exporter", "nope"}, "exporter nope does not exist"},
		{"selector nothing matches", alice, []string{"create", "lease", "-l", "board=rpi9"}, "no exporter matches"},
		{"client token on an admin call", alice, []string{"admin", "get", "clients"}, "needs an admin token"},
		{"no config at all", []string{"JMP_CLIENT_CONFIG=", "XDG_CONFIG_HOME=" + t.TempDir()}, []string{"get", "leases"}, "no client config"},
		{"bad output format", alice, []string{"get", "leases", "-o", "xml"}, "unknown output format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, l.fail(tt.env, tt.args...), tt.want)
		})
	}

	// Deleting the client revokes its token at once.
	l.jmp(l.admin, "admin", "delete", "client", "alice")
	require.Contains(t, l.fail(alice, "get", "leases"), "no longer exists")
}

func TestCoordinatorExpiredToken(t *testing.T) {
	l := newLab(t, "--token-lifetime", "2s")
	alice := l.client("alice")
	l.jmp(alice, "get", "leases")
	var msg string
	l.waitFor("the token to expire", func() bool {
		r := run(t, l.dir, alice, "get", "leases")
		msg = strings.TrimSpace(r.stderr)
		return r.code != 0
	})
	require.Contains(t, msg, "token expired")
	require.Contains(t, msg, "ask your lab admin")
}

func TestCoordinatorClientConfigs(t *testing.T) {
	l := newLab(t)
	xdg := []string{"XDG_CONFIG_HOME=" + filepath.Join(l.dir, "xdg"), "JMP_CLIENT_CONFIG="}
	l.jmp(l.admin, "admin", "create", "client", "ci", "--save")
	l.jmp(xdg, "config", "client", "import", filepath.Join(l.dir, "data", "admin.yaml"))
	list := l.jmp(xdg, "config", "client", "list")
	require.Contains(t, list, "* ")
	require.Contains(t, list, "admin")
	// The first saved config is current; switch to the admin's.
	require.Contains(t, l.jmp(xdg, "config", "client", "show"), "name:      ci")
	l.jmp(xdg, "config", "client", "use", "admin")
	require.Contains(t, l.jmp(xdg, "config", "client", "show"), "jumpmesh-admin+jwt")
	require.Contains(t, l.jmp(xdg, "admin", "get", "clients", "-o", "name"), "ci")
	// Client configs are for the owner's eyes only.
	info, err := os.Stat(filepath.Join(l.dir, "xdg", "jumpmesh", "clients", "ci.yaml"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

// TestCoordinatorConcurrentClients has many CLI clients race for two
// exporters: every lease is served, one at a time per exporter.
func TestCoordinatorConcurrentClients(t *testing.T) {
	l := newLab(t)
	l.exporter("vb-1", "board=virtual")
	l.exporter("vb-2", "board=virtual")
	const clients = 6
	envs := make([][]string, clients)
	for i := range clients {
		envs[i] = l.client(fmt.Sprintf("c%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			r := run(t, l.dir, envs[i], "create", "lease", "-l", "board=virtual", "--duration", "1s", "--wait=60s", "-o", "json")
			if r.code != 0 {
				errs <- fmt.Errorf("client c%d: %s", i, r.stderr)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// No two leases held one exporter at the same time.
	var all []leaseJSON
	require.NoError(t, json.Unmarshal([]byte(l.jmp(l.admin, "get", "leases", "--all", "-o", "json")), &all))
	require.Len(t, all, clients)
	byExporter := map[string][]leaseJSON{}
	for _, le := range all {
		byExporter[le.Status.Exporter] = append(byExporter[le.Status.Exporter], le)
	}
	require.Len(t, byExporter, 2, "both exporters served leases")
	for exporter, leases := range byExporter {
		slices.SortFunc(leases, func(a, b leaseJSON) int { return a.Status.BeginTime.Compare(b.Status.BeginTime) })
		for i := 1; i < len(leases); i++ {
			require.False(t, leases[i].Status.BeginTime.Before(leases[i-1].Status.EndTime),
				"on %s, %s began before %s ended", exporter, leases[i].Metadata.Name, leases[i-1].Metadata.Name)
		}
	}
}

// TestCoordinatorKubectlIdentities: on Kubernetes, a lab admin makes a
// Client and an Exporter with kubectl; the coordinator puts each one's
// credentials in a Secret, which is all the exporter and the client need.
func TestCoordinatorKubectlIdentities(t *testing.T) {
	if os.Getenv(storeEnv) != "kubernetes" {
		t.Skipf("identities are made with kubectl only on the Kubernetes store; run with %s=kubernetes", storeEnv)
	}
	l := newLab(t)
	manifest := filepath.Join(l.dir, "identities.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte(`apiVersion: jumpmesh.dev/v1alpha1
kind: Client
metadata: {name: ci-bot, labels: {team: ci}}
---
apiVersion: jumpmesh.dev/v1alpha1
kind: Exporter
metadata: {name: vb-k, labels: {board: virtual}}
`), 0o600))
	l.kubectl("apply", "-f", manifest)

	clientData := l.secretData("jumpmesh-client-ci-bot")
	clientConfig := filepath.Join(l.dir, "ci-bot.yaml")
	require.NoError(t, os.WriteFile(clientConfig, clientData["client.yaml"], 0o600))
	ci := []string{"JMP_CLIENT_CONFIG=" + clientConfig, "XDG_CONFIG_HOME=" + filepath.Join(l.dir, "xdg-ci-bot")}

	exp := l.secretData("jumpmesh-exporter-vb-k")
	board, err := os.ReadFile(filepath.Join(l.boards, "board.yaml"))
	require.NoError(t, err)
	_, export, ok := strings.Cut(string(board), "\nexport:\n")
	require.True(t, ok, "board.yaml has an export: block")
	exporterConfig := filepath.Join(l.boards, "vb-k.yaml")
	require.NoError(t, os.WriteFile(exporterConfig, fmt.Appendf(nil, `apiVersion: jumpmesh.dev/v1alpha1
kind: ExporterConfig
metadata: {name: vb-k}
endpoint: %s
tls: {caFingerprint: "%s"}
token: %s
export:
%s`, exp["endpoint"], exp["ca-fingerprint"], exp["token"], export), 0o600))
	startProc(t, "exporter-vb-k", l.boards, "run", "--exporter-config", exporterConfig)
	l.waitFor("exporter vb-k to be online", func() bool { return l.exporterStatus("vb-k") == "available" })

	name := strings.TrimSpace(l.jmp(ci, "create", "lease", "-l", "board=virtual", "--wait", "-o", "name"))
	require.Equal(t, "vb-k", l.lease(ci, name).Status.Exporter)
	l.waitFor("kubectl to show the lease", func() bool {
		return strings.Contains(l.kubectl("get", "exporters.jumpmesh.dev", "vb-k"), "Leased")
	})
	t.Logf("kubectl get exporters.jumpmesh.dev,leases.jumpmesh.dev,clients.jumpmesh.dev:\n%s",
		l.kubectl("get", "exporters.jumpmesh.dev,leases.jumpmesh.dev,clients.jumpmesh.dev"))
}

// TestCoordinatorDeployArgs: the Deployments in deploy/, the
// coordinator's and the relay's, pass only flags that jmp has.
func TestCoordinatorDeployArgs(t *testing.T) {
	for _, tt := range []struct{ file, command string }{
		{"coordinator.yaml", "coordinator"},
		{"relay.yaml", "relay"},
	} {
		t.Run(tt.command, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", tt.file))
			require.NoError(t, err)
			dec := yaml.NewDecoder(bytes.NewReader(data))
			var args []string
			for {
				var doc struct {
					Kind string `yaml:"kind"`
					Spec struct {
						Template struct {
							Spec struct {
								Containers []struct {
									Args []string `yaml:"args"`
								} `yaml:"containers"`
							} `yaml:"spec"`
						} `yaml:"template"`
					} `yaml:"spec"`
				}
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				if doc.Kind == "Deployment" {
					require.Len(t, doc.Spec.Template.Spec.Containers, 1)
					args = doc.Spec.Template.Spec.Containers[0].Args
				}
			}
			require.NotEmpty(t, args, "deploy/%s has a Deployment with args", tt.file)
			require.Equal(t, tt.command, args[0])
			// Kubernetes expands $(VAR) from the container's environment.
			for i, a := range args {
				args[i] = envRef.ReplaceAllString(a, "value")
			}
			r := run(t, t.TempDir(), nil, append(args, "--help")...)
			require.Equal(t, 0, r.code, "jmp %s: %s", strings.Join(args, " "), r.stderr)
		})
	}
}

// envRef is a $(VAR) reference in a container's args.
var envRef = regexp.MustCompile(`\$\([A-Z_]+\)`)
