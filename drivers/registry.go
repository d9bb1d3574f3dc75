package drivers

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/jumpmesh/jumpmesh/drivers/config"
	"go.yaml.in/yaml/v3"
)

// Type is a kind of driver that configs name in `type:`.
type Type struct {
	// Name as configs write it, e.g. "virtual.power".
	Name string
	// One line for `jmp drivers` and error messages.
	Description string
	// New builds a driver from its config.
	New func(*Build) (Driver, error)
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Type{}
)

// Register adds a driver type. Driver packages call it from init; a
// duplicate name is a programming error and panics.
func Register(t Type) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[t.Name]; dup {
		panic("drivers: type registered twice: " + t.Name)
	}
	registry[t.Name] = t
}

// Lookup returns the driver type with that name.
func Lookup(name string) (Type, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	t, ok := registry[name]
	return t, ok
}

// Types returns every registered type, sorted by name.
func Types() []Type {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return slices.SortedFunc(maps.Values(registry), func(a, b Type) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}

// Build is what a driver gets to build itself.
type Build struct {
	// Name is the driver's name under its parent; Path its dotted path from
	// the root of the tree, e.g. "board.serial".
	Name, Path string
	// Exporter is the exporter's name.
	Exporter string
	// File is the config file; Dir its folder, against which relative paths
	// in the config are taken.
	File, Dir string
	// Log is the driver's logger.
	Log *slog.Logger
	// Config is the driver's `config:` block; Decode it rather than read it.
	Config *yaml.Node
	// Shared holds objects that several drivers of one exporter use
	// together, such as one simulated board behind its power, serial and
	// storage drivers.
	Shared *Shared
}

// Decode decodes the driver's config block strictly into v.
func (b *Build) Decode(v any) error {
	return config.Decode(b.File, "export."+b.Path+".config", b.Config, v)
}

// Errorf returns an error that points at the driver's config block.
func (b *Build) Errorf(format string, args ...any) error {
	line := 0
	if b.Config != nil {
		line = b.Config.Line
	}
	return &config.Error{File: b.File, Line: line, Key: "export." + b.Path, Msg: fmt.Sprintf(format, args...)}
}

// ErrorfAt returns an error that points at one key of the driver's config
// block, given as a dotted path such as "commands.hello.dir".
func (b *Build) ErrorfAt(key string, format string, args ...any) error {
	line := 0
	if b.Config != nil {
		line = b.Config.Line
		n := b.Config
	walk:
		for _, part := range strings.Split(key, ".") {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, n = n.Content[i].Line, n.Content[i+1]
					continue walk
				}
			}
			break
		}
	}
	return &config.Error{File: b.File, Line: line, Key: "export." + b.Path + ".config." + key, Msg: fmt.Sprintf(format, args...)}
}

// Shared is a per-exporter set of objects keyed by name.
type Shared struct {
	mu      sync.Mutex
	objects map[string]any
}

// SharedObject returns the object under key, creating it with create the
// first time. The exporter closes shared objects that implement io.Closer
// after all drivers.
func SharedObject[T any](s *Shared, key string, create func() (T, error)) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objects[key]; ok {
		t, ok := o.(T)
		if !ok {
			var zero T
			return zero, fmt.Errorf("shared object %q is a %T, not a %T", key, o, zero)
		}
		return t, nil
	}
	t, err := create()
	if err != nil {
		return t, err
	}
	if s.objects == nil {
		s.objects = map[string]any{}
	}
	s.objects[key] = t
	return t, nil
}

// All returns the shared objects, for the exporter to close.
func (s *Shared) All() []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.objects))
}
