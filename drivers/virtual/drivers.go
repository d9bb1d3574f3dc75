package virtual

import (
	"context"
	"path/filepath"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/power"
	"github.com/jumpmesh/jumpmesh/drivers/serial"
	"github.com/jumpmesh/jumpmesh/drivers/storage"
)

func init() {
	drivers.Register(drivers.Type{Name: "virtual.power", Description: "The power switch of a simulated board.", New: newPower})
	drivers.Register(drivers.Type{Name: "virtual.serial", Description: "The serial console of a simulated board.", New: newSerial})
	drivers.Register(drivers.Type{Name: "virtual.storage", Description: "The file-backed disk of a simulated board.", New: newStorage})
}

// defaultCycleDelay is how long a power cycle keeps the board off unless
// configured: long enough to see in a demo.
const defaultCycleDelay = time.Second

// defaultDiskSize is the largest image a virtual disk takes unless
// configured.
const defaultDiskSize = 64 << 20

// Power is the virtual.power driver.
type Power struct {
	board *board
	cfg   power.Config
}

type powerConfig struct {
	Board        string `yaml:"board"`
	power.Config `yaml:",inline"`
}

func newPower(b *drivers.Build) (drivers.Driver, error) {
	var cfg powerConfig
	if err := b.Decode(&cfg); err != nil {
		return nil, err
	}
	bd, err := boardFor(b, cfg.Board, "power")
	if err != nil {
		return nil, err
	}
	return &Power{board: bd, cfg: cfg.Config}, nil
}

// Interfaces implements drivers.Driver.
func (p *Power) Interfaces() []drivers.Interface { return []drivers.Interface{power.Bind(p)} }

// Close leaves the power as onExit says.
func (p *Power) Close() error { return p.cfg.Exit(p) }

// On implements power.Server.
func (p *Power) On(context.Context) error {
	p.board.setPower(true)
	return nil
}

// Off implements power.Server.
func (p *Power) Off(context.Context) error {
	p.board.setPower(false)
	return nil
}

// Cycle implements power.Server.
func (p *Power) Cycle(ctx context.Context, delay time.Duration) error {
	p.board.setPower(false)
	t := time.NewTimer(p.cfg.Delay(delay, defaultCycleDelay))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.board.setPower(true)
	return nil
}

// Status implements power.Server.
func (p *Power) Status(context.Context) (power.Status, error) { return p.board.power.Status(), nil }

// Watch implements power.Server.
func (p *Power) Watch(ctx context.Context, fn func(power.Status) error) error {
	return p.board.power.Watch(ctx, fn)
}

// Serial is the virtual.serial driver.
type Serial struct{ board *board }

type serialConfig struct {
	Board string `yaml:"board"`
	// LineDelay paces the boot log.
	LineDelay *drivers.Duration `yaml:"lineDelay"`
}

func newSerial(b *drivers.Build) (drivers.Driver, error) {
	var cfg serialConfig
	if err := b.Decode(&cfg); err != nil {
		return nil, err
	}
	bd, err := boardFor(b, cfg.Board, "serial")
	if err != nil {
		return nil, err
	}
	if cfg.LineDelay != nil {
		bd.mu.Lock()
		bd.lineDelay = time.Duration(*cfg.LineDelay)
		bd.mu.Unlock()
	}
	return &Serial{board: bd}, nil
}

// Interfaces implements drivers.Driver.
func (s *Serial) Interfaces() []drivers.Interface {
	return []drivers.Interface{serial.Bind(s.board.console)}
}

// Close implements drivers.Driver; the board ends the consoles.
func (s *Serial) Close() error { return nil }

// Storage is the virtual.storage driver.
type Storage struct{ disk *disk }

type storageConfig struct {
	Board string `yaml:"board"`
	// Path is the image file, relative to the config file's folder.
	Path string `yaml:"path" required:"true"`
	// Size is the largest image the disk takes.
	Size drivers.Size `yaml:"size"`
}

func newStorage(b *drivers.Build) (drivers.Driver, error) {
	cfg := storageConfig{Size: defaultDiskSize}
	if err := b.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Size <= 0 {
		return nil, b.ErrorfAt("size", "must be positive, like 64Mi")
	}
	path := cfg.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.Dir, path)
	}
	d, err := openDisk(path, int64(cfg.Size), b.Log)
	if err != nil {
		return nil, b.ErrorfAt("path", "%v", err)
	}
	bd, err := boardFor(b, cfg.Board, "storage")
	if err != nil {
		return nil, err
	}
	bd.mu.Lock()
	bd.disk = d
	bd.mu.Unlock()
	return &Storage{disk: d}, nil
}

// Interfaces implements drivers.Driver.
func (s *Storage) Interfaces() []drivers.Interface { return []drivers.Interface{storage.Bind(s.disk)} }

// Close implements drivers.Driver; writes in flight end with their calls.
func (s *Storage) Close() error { return nil }
