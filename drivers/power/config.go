package power

import (
	"context"
	"fmt"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	"go.yaml.in/yaml/v3"
)

// exitTimeout bounds how long a stopping exporter waits for a device to
// reach its exit state, so a dead device cannot hang the shutdown.
const exitTimeout = 10 * time.Second

// Config is what every power driver's config holds. Embed it inline:
//
//	type config struct {
//		power.Config `yaml:",inline"`
//		Port string `yaml:"port"`
//	}
type Config struct {
	// CycleDelay is how long Cycle keeps the power off when the caller
	// does not say; 0 leaves it to the driver's default.
	CycleDelay drivers.Duration `yaml:"cycleDelay"`
	// OnExit is what to leave the power at when the exporter stops.
	OnExit OnExit `yaml:"onExit"`
}

// OnExit is what a power driver leaves the power at when the exporter
// stops: "off" (the default, safe for unattended labs), "on" or "keep".
type OnExit string

// The values of OnExit.
const (
	ExitOff  OnExit = "off"
	ExitOn   OnExit = "on"
	ExitKeep OnExit = "keep"
)

// UnmarshalYAML accepts only the known values.
func (o *OnExit) UnmarshalYAML(n *yaml.Node) error {
	switch v := OnExit(n.Value); v {
	case ExitOff, ExitOn, ExitKeep:
		*o = v
		return nil
	}
	return fmt.Errorf("line %d: %q is not one of off, on, keep", n.Line, n.Value)
}

// Exit leaves s's power as OnExit says; power drivers call it from Close.
func (c Config) Exit(s Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	switch c.OnExit {
	case ExitKeep:
		return nil
	case ExitOn:
		if err := s.On(ctx); err != nil {
			return fmt.Errorf("leave power on (onExit: on): %w", err)
		}
		return nil
	}
	if err := s.Off(ctx); err != nil {
		return fmt.Errorf("leave power off (onExit: off): %w", err)
	}
	return nil
}

// Delay is the delay Cycle should use: the caller's, else the configured
// one, else def.
func (c Config) Delay(requested, def time.Duration) time.Duration {
	switch {
	case requested > 0:
		return requested
	case c.CycleDelay > 0:
		return time.Duration(c.CycleDelay)
	}
	return def
}
