package exporter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jumpmesh/jumpmesh/drivers/config"
	"go.yaml.in/yaml/v3"
)

// APIVersion and Kind head every ExporterConfig.
const (
	APIVersion = "jumpmesh.dev/v1alpha1"
	Kind       = "ExporterConfig"
)

// Config is an ExporterConfig file.
type Config struct {
	APIVersion string   `yaml:"apiVersion" required:"true"`
	Kind       string   `yaml:"kind" required:"true"`
	Metadata   Metadata `yaml:"metadata" required:"true"`
	// Endpoint, TLS and Token connect the exporter to a coordinator; local
	// mode (`jmp shell --exporter-config`) ignores them.
	Endpoint string    `yaml:"endpoint,omitempty"`
	TLS      TLSConfig `yaml:"tls,omitempty"`
	Token    string    `yaml:"token,omitempty"`
	// Export is the driver tree, in the file's order.
	Export DriverMap `yaml:"export"`

	// File is where the config was read from; Dir its folder, against which
	// drivers take relative paths.
	File string `yaml:"-"`
	Dir  string `yaml:"-"`
}

// Metadata names the exporter.
type Metadata struct {
	Name   string            `yaml:"name" required:"true"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

// TLSConfig says how to trust the coordinator.
type TLSConfig struct {
	// CAFingerprint pins the coordinator's certificate (sha256, hex).
	CAFingerprint string `yaml:"caFingerprint,omitempty"`
	// CAFile is a PEM bundle of CAs to trust instead.
	CAFile string `yaml:"caFile,omitempty"`
}

// DriverConfig is one entry of `export:`.
type DriverConfig struct {
	Type        string            `yaml:"type" required:"true"`
	Description string            `yaml:"description,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Config      yaml.Node         `yaml:"config,omitempty"`
	Children    DriverMap         `yaml:"children,omitempty"`
}

// DriverMap is an ordered map of driver names to their configs: the order
// of the file is the order of the tree.
type DriverMap []NamedDriver

// NamedDriver is a DriverMap entry.
type NamedDriver struct {
	Name string
	Line int
	DriverConfig
}

// UnmarshalYAML keeps the mapping's order.
func (m *DriverMap) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of driver names to drivers", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var d DriverConfig
		if err := v.Decode(&d); err != nil {
			return err
		}
		*m = append(*m, NamedDriver{Name: k.Value, Line: k.Line, DriverConfig: d})
	}
	return nil
}

// Load reads and checks an ExporterConfig file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("exporter config %s does not exist; see examples/virtual-board.yaml for one that works", path)
	}
	if err != nil {
		return nil, fmt.Errorf("read exporter config: %w", err)
	}
	return Parse(path, data)
}

// Parse checks an ExporterConfig read from file.
func Parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// config.Parse words yaml's syntax errors for people.
		return nil, config.Parse(file, data, &struct{}{})
	}
	if doc.Kind == 0 {
		return nil, &config.Error{File: file, Msg: "the file is empty; see examples/virtual-board.yaml"}
	}
	var c Config
	if err := config.Decode(file, "", &doc, &c); err != nil {
		return nil, err
	}
	if err := checkDrivers(file, "export", exportNode(&doc)); err != nil {
		return nil, err
	}
	if c.APIVersion != APIVersion || c.Kind != Kind {
		return nil, &config.Error{File: file, Line: 1, Msg: fmt.Sprintf("want apiVersion: %s and kind: %s, got %q and %q", APIVersion, Kind, c.APIVersion, c.Kind)}
	}
	c.File = file
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("exporter config %s: %w", file, err)
	}
	c.Dir = filepath.Dir(abs)
	return &c, nil
}

// exportNode finds the `export:` mapping in a parsed document.
func exportNode(doc *yaml.Node) *yaml.Node {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "export" {
			return root.Content[i+1]
		}
	}
	return nil
}

// checkDrivers checks every driver entry's keys strictly; DriverMap's own
// decoding keeps order but cannot see the file name.
func checkDrivers(file, key string, n *yaml.Node) error {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, v := n.Content[i].Value, n.Content[i+1]
		path := key + "." + name
		var shape struct {
			Type        string            `yaml:"type" required:"true"`
			Description string            `yaml:"description"`
			Labels      map[string]string `yaml:"labels"`
			Config      yaml.Node         `yaml:"config"`
			Children    yaml.Node         `yaml:"children"`
		}
		if err := config.Decode(file, path, v, &shape); err != nil {
			return err
		}
		if err := checkDrivers(file, path+".children", &shape.Children); err != nil {
			return err
		}
	}
	return nil
}
