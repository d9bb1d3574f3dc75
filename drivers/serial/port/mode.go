package port

import (
	"fmt"
	"runtime"
	"strconv"

	goserial "go.bug.st/serial"
	"go.yaml.in/yaml/v3"
)

// parity is the config's parity: none, odd, even, mark or space.
type parity struct{ mode goserial.Parity }

var parities = map[string]goserial.Parity{
	"none": goserial.NoParity, "odd": goserial.OddParity, "even": goserial.EvenParity,
	"mark": goserial.MarkParity, "space": goserial.SpaceParity,
}

func (p *parity) UnmarshalYAML(n *yaml.Node) error {
	m, ok := parities[n.Value]
	if !ok {
		return fmt.Errorf("line %d: %q is not one of none, odd, even, mark, space", n.Line, n.Value)
	}
	p.mode = m
	return nil
}

// stopBits is the config's stop bits: 1, 1.5 or 2.
type stopBits struct{ mode goserial.StopBits }

var stopBitValues = map[string]goserial.StopBits{
	"1": goserial.OneStopBit, "1.5": goserial.OnePointFiveStopBits, "2": goserial.TwoStopBits,
}

func (s *stopBits) UnmarshalYAML(n *yaml.Node) error {
	m, ok := stopBitValues[n.Value]
	if !ok {
		return fmt.Errorf("line %d: %q is not one of 1, 1.5, 2", n.Line, n.Value)
	}
	if m == goserial.OnePointFiveStopBits && runtime.GOOS != "windows" {
		// The library's termios code has no 1.5: only Windows drivers do.
		return fmt.Errorf("line %d: 1.5 stop bits are not supported on %s; use 1 or 2", n.Line, runtime.GOOS)
	}
	s.mode = m
	return nil
}

// flowControl is the config's flow control. go.bug.st/serial v1.8.0 always
// turns hardware (RTS/CTS) and software (XON/XOFF) flow control off, so
// only "none" can be honoured; the others are refused rather than ignored.
type flowControl struct{}

func (flowControl) UnmarshalYAML(n *yaml.Node) error {
	switch n.Value {
	case "none":
		return nil
	case "rts/cts", "xon/xoff":
		return fmt.Errorf("line %d: %q is not supported yet (the serial library turns flow control off); use none", n.Line, n.Value)
	}
	return fmt.Errorf("line %d: %q is not one of none, rts/cts, xon/xoff", n.Line, n.Value)
}

// baudRate is the config's bits per second.
type baudRate int

func (b *baudRate) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if err != nil || v <= 0 {
		return fmt.Errorf("line %d: %q is not a positive number of bits per second, like 115200", n.Line, n.Value)
	}
	*b = baudRate(v)
	return nil
}

// dataBits is the config's bits per character: 5 to 8.
type dataBits int

func (d *dataBits) UnmarshalYAML(n *yaml.Node) error {
	v, err := strconv.Atoi(n.Value)
	if err != nil || v < 5 || v > 8 {
		return fmt.Errorf("line %d: %q is not one of 5, 6, 7, 8", n.Line, n.Value)
	}
	*d = dataBits(v)
	return nil
}
