// Package controlplane runs a real Kubernetes control plane for tests: etcd
// and kube-apiserver, from the binaries test/k8s/build-apiserver.sh builds
// and caches, on loopback ports, with data in a folder the test owns.
package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Version is the Kubernetes release the tests run against; keep it in step
// with K8S_VERSION in build-apiserver.sh (a test checks).
const Version = "v1.37.2"

// AssetsEnv names the folder holding etcd, kube-apiserver and kubectl,
// when not the script's default cache folder.
const AssetsEnv = "JUMPMESH_K8S_ASSETS"

// Timeouts, generous for a loaded 2-core machine: etcd is ready in under a
// second and the API server in about five.
const (
	readyTimeout = 90 * time.Second
	stopTimeout  = 15 * time.Second
	pollInterval = 100 * time.Millisecond
)

// ErrNoAssets says the binaries are not built.
var ErrNoAssets = errors.New("the Kubernetes test binaries are not built; run test/k8s/build-apiserver.sh (about 10 minutes once, then cached)")

// Assets returns the folder holding the binaries.
func Assets() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrNoAssets, err)
		}
		dir = filepath.Join(cache, "jumpmesh", "k8s", Version)
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("%w (%s is missing)", ErrNoAssets, filepath.Join(dir, bin))
		}
	}
	return dir, nil
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	dir, assets string
	token       string
	apiPort     int
	apiArgs     []string
	etcd, api   *proc
	// Kubeconfig is a kubeconfig file for the admin, for kubectl.
	Kubeconfig string
}

// Start starts etcd and the API server, with their data and logs in dir.
func Start(ctx context.Context, dir string) (*ControlPlane, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{dir: dir, assets: assets, token: randomHex(16)}
	ok := false
	defer func() {
		if !ok {
			cp.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	if err := cp.startEtcd(ctx, ports[0], ports[1]); err != nil {
		return nil, err
	}
	cp.apiPort = ports[2]
	if err := cp.prepareAPIServer(ports[0]); err != nil {
		return nil, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, client, peer int) error {
	c := fmt.Sprintf("http://127.0.0.1:%d", client)
	p := fmt.Sprintf("http://127.0.0.1:%d", peer)
	cmd, err := cp.spawn("etcd", "--data-dir", filepath.Join(cp.dir, "etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", c, "--advertise-client-urls", c,
		"--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
		"--initial-cluster", "test="+p, "--name", "test")
	if err != nil {
		return err
	}
	cp.etcd = cmd
	return waitReady(ctx, "etcd", cmd, &http.Client{}, c+"/health", "")
}

func (cp *ControlPlane) prepareAPIServer(etcdPort int) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n", cp.token),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(cp.dir, name), data, 0o600); err != nil {
			return err
		}
	}
	cp.apiArgs = []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(cp.apiPort),
		"--cert-dir", filepath.Join(cp.dir, "certs"),
		"--token-auth-file", filepath.Join(cp.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(cp.dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(cp.dir, "sa.key"),
		// Only an address range for Service IPs; nothing is routed.
		"--service-cluster-ip-range", "10.96.0.0/24",
		// On loopback there is no public IP to reconcile the kubernetes
		// Service's endpoints to.
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
	}
	return nil
}

// StartAPIServer starts the API server (again, after StopAPIServer) on the
// same port and waits until it is ready.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cmd, err := cp.spawn("kube-apiserver", cp.apiArgs...)
	if err != nil {
		return err
	}
	cp.api = cmd
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return waitReady(ctx, "kube-apiserver", cmd, insecure, cp.Host()+"/readyz", cp.token)
}

// StopAPIServer kills the API server, as a crash would (a graceful stop
// waits out open watches for longer than tests should), leaving etcd and
// its data.
func (cp *ControlPlane) StopAPIServer() {
	kill(cp.api)
	cp.api = nil
}

// Stop stops both processes. Their data stays in the folder.
func (cp *ControlPlane) Stop() error {
	cp.StopAPIServer()
	return stop(cp.etcd)
}

// Host is the API server's URL.
func (cp *ControlPlane) Host() string { return fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort) }

// RESTConfig is the admin's client config, with rate limits high enough
// not to slow tests down.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.Host(),
		BearerToken:     cp.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000,
		Burst:           2000,
	}
}

// Kubectl runs the built kubectl against the control plane and returns its
// standard output; a failure carries its standard error.
func (cp *ControlPlane) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(cp.assets, "kubectl"), args...)
	// kubectl caches discovery under $HOME; keep it in the test's folder.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.Kubeconfig, "HOME="+cp.dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %v: %w: %s", args, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = filepath.Join(cp.dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
`, cp.Host(), cp.token)
	return os.WriteFile(cp.Kubeconfig, []byte(cfg), 0o600)
}

// proc is a started process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// spawn starts a binary with its output in a log file in the folder.
func (cp *ControlPlane) spawn(name string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(cp.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(cp.assets, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and killed with the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls a health endpoint until it answers 200: the process
// gives no other sign of being ready.
func waitReady(ctx context.Context, name string, p *proc, hc *http.Client, url, token string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-p.done:
			return fmt.Errorf("%s exited while starting; see its log", name)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", name, url, ctx.Err())
		}
	}
}

func kill(p *proc) {
	if p != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func stop(p *proc) error {
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed it", filepath.Base(p.cmd.Path), stopTimeout)
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
