package coordclient

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jumpmesh/jumpmesh/coordinator/certs"
	"github.com/jumpmesh/jumpmesh/drivers/config"
	"go.yaml.in/yaml/v3"
)

// APIVersion of the config files jmp writes.
const APIVersion = "jumpmesh.dev/v1alpha1"

// ClientConfig is how a client (or an admin) reaches the coordinator.
type ClientConfig struct {
	APIVersion string   `yaml:"apiVersion" required:"true"`
	Kind       string   `yaml:"kind" required:"true"`
	Metadata   Metadata `yaml:"metadata" required:"true"`
	// https://host:port
	Endpoint string    `yaml:"endpoint" required:"true"`
	TLS      TLSConfig `yaml:"tls"`
	Token    string    `yaml:"token" required:"true"`

	// Path is the file it was read from; not in the file.
	Path string `yaml:"-"`
}

// Metadata names the identity.
type Metadata struct {
	Name   string            `yaml:"name" required:"true"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

// TLSConfig says which coordinator certificate to trust: one with this
// fingerprint anywhere in its chain, or one a CA in this file signed.
type TLSConfig struct {
	CAFingerprint string `yaml:"caFingerprint,omitempty"`
	CAFile        string `yaml:"caFile,omitempty"`
}

// KindClientConfig is the kind of a ClientConfig file.
const KindClientConfig = "ClientConfig"

// LoadClientConfig reads a ClientConfig file strictly.
func LoadClientConfig(path string) (*ClientConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client config: %w", err)
	}
	var c ClientConfig
	if err := config.Parse(path, data, &c); err != nil {
		return nil, err
	}
	if c.Kind != KindClientConfig {
		return nil, &config.Error{File: path, Key: "kind", Msg: fmt.Sprintf("want %s, got %q", KindClientConfig, c.Kind)}
	}
	if err := c.check(); err != nil {
		return nil, &config.Error{File: path, Msg: err.Error()}
	}
	c.Path = path
	return &c, nil
}

func (c *ClientConfig) check() error {
	if !strings.HasPrefix(c.Endpoint, "https://") {
		return fmt.Errorf("endpoint: want https://host:port, got %q", c.Endpoint)
	}
	if c.TLS.CAFingerprint == "" && c.TLS.CAFile == "" {
		return errors.New("tls: give caFingerprint or caFile, as `jmp admin create client` writes them")
	}
	return nil
}

// Marshal encodes the config as YAML.
func (c *ClientConfig) Marshal() ([]byte, error) {
	return MarshalYAML(c)
}

// MarshalYAML encodes v as YAML indented by two spaces, as people write it.
func MarshalYAML(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Save writes the config to path atomically, readable only by its owner
// (it holds a token).
func (c *ClientConfig) Save(path string) error {
	data, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("encode client config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save client config: %w", err)
	}
	return certs.WriteFileAtomic(path, data, 0o600)
}

// ConfigDir is $XDG_CONFIG_HOME/jumpmesh (~/.config/jumpmesh by default).
func ConfigDir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find config dir: set XDG_CONFIG_HOME or HOME: %w", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "jumpmesh"), nil
}

// Store is the client configs in the config dir: clients/NAME.yaml, and the
// name of the current one in the file "current-client".
type Store struct{ Dir string }

// DefaultStore is the store in ConfigDir.
func DefaultStore() (*Store, error) {
	dir, err := ConfigDir()
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir}, nil
}

// Path is where the named config lives.
func (s *Store) Path(name string) string { return filepath.Join(s.Dir, "clients", name+".yaml") }

// List returns the names of the stored configs, sorted.
func (s *Store) List() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.Dir, "clients"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list client configs: %w", err)
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Current returns the name of the current config, or "" when none is set.
func (s *Store) Current() (string, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir, "current-client"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read current client: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// Use makes the named config current.
func (s *Store) Use(name string) error {
	if _, err := os.Stat(s.Path(name)); err != nil {
		return fmt.Errorf("no client config named %q in %s; see `jmp config client list`", name, filepath.Join(s.Dir, "clients"))
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("use client config: %w", err)
	}
	return certs.WriteFileAtomic(filepath.Join(s.Dir, "current-client"), []byte(name+"\n"), 0o600)
}

// Save stores a config under its name and makes it current when none is.
func (s *Store) Save(c *ClientConfig) (string, error) {
	path := s.Path(c.Metadata.Name)
	if err := c.Save(path); err != nil {
		return "", err
	}
	if cur, err := s.Current(); err == nil && cur == "" {
		if err := s.Use(c.Metadata.Name); err != nil {
			return "", err
		}
	}
	return path, nil
}

// EnvClientConfig names a client config file, for when no flag does.
const EnvClientConfig = "JMP_CLIENT_CONFIG"

// ResolveClientConfig loads the client config to use: the file given (by a
// flag), else $JMP_CLIENT_CONFIG, else the current one in the config dir.
func ResolveClientConfig(flagPath string) (*ClientConfig, error) {
	if flagPath != "" {
		return LoadClientConfig(flagPath)
	}
	if env := os.Getenv(EnvClientConfig); env != "" {
		return LoadClientConfig(env)
	}
	s, err := DefaultStore()
	if err != nil {
		return nil, err
	}
	cur, err := s.Current()
	if err != nil {
		return nil, err
	}
	if cur == "" {
		return nil, errors.New("no client config: pass --client-config FILE, set " + EnvClientConfig +
			", or pick one with `jmp config client use NAME`")
	}
	return LoadClientConfig(s.Path(cur))
}
