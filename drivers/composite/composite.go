// Package composite is the `composite` driver type: a node with no
// interfaces of its own that groups its children, such as the drivers of
// one board on an exporter that hosts several.
package composite

import "github.com/jumpmesh/jumpmesh/drivers"

func init() {
	drivers.Register(drivers.Type{
		Name:        "composite",
		Description: "Groups its children; has no interfaces of its own.",
		New:         New,
	})
}

// Composite groups its children.
type Composite struct{}

// New builds a composite; it takes no config.
func New(b *drivers.Build) (drivers.Driver, error) {
	if b.Config != nil && len(b.Config.Content) > 0 {
		return nil, b.Errorf("composite takes no config; put the drivers it groups under children:")
	}
	return Composite{}, nil
}

// Interfaces implements drivers.Driver: none.
func (Composite) Interfaces() []drivers.Interface { return nil }

// Close implements drivers.Driver; the children close themselves.
func (Composite) Close() error { return nil }
