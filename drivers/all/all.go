// Package all registers every driver type that ships with jumpmesh; import
// it for its side effects.
package all

import (
	_ "github.com/jumpmesh/jumpmesh/drivers/composite"
	_ "github.com/jumpmesh/jumpmesh/drivers/serial/port"
	_ "github.com/jumpmesh/jumpmesh/drivers/shell/script"
	_ "github.com/jumpmesh/jumpmesh/drivers/virtual"
)
