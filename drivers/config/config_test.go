package config_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/config"
	"github.com/stretchr/testify/require"
)

type serialConfig struct {
	Port     string            `yaml:"port" required:"true"`
	Baud     int               `yaml:"baudRate"`
	Verbose  bool              `yaml:"verbose"`
	Delay    drivers.Duration  `yaml:"delay"`
	Size     drivers.Size      `yaml:"size"`
	Env      map[string]string `yaml:"env"`
	Commands map[string]struct {
		Run string `yaml:"run" required:"true"`
	} `yaml:"commands"`
	Args []struct {
		Name string `yaml:"name"`
	} `yaml:"args"`
}

func TestParse(t *testing.T) {
	var c serialConfig
	err := config.Parse("s.yaml", []byte(`port: /dev/ttyUSB0
baudRate: 9600
delay: 1m30s
size: 64Mi
env: {A: b}
commands: {hello: {run: echo}}
args: [{name: x}]
`), &c)
	require.NoError(t, err)
	require.Equal(t, 9600, c.Baud)
	require.Equal(t, drivers.Size(64<<20), c.Size)
	require.Equal(t, "echo", c.Commands["hello"].Run)
	require.Equal(t, "x", c.Args[0].Name)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "port: x\nbaud: 1\n", "s.yaml:2: baud: unknown key; valid keys: args, baudRate, commands, delay, env, port, size, verbose"},
		{"missing required", "baudRate: 1\n", "s.yaml:1: port: required key is missing"},
		{"nested missing required", "port: x\ncommands:\n  hi: {}\n", "s.yaml:3: commands.hi.run: required key is missing"},
		{"wrong int", "port: x\nbaudRate: fast\n", "s.yaml:2: baudRate: cannot unmarshal !!str `fast` into int"},
		{"wrong bool", "port: x\nverbose: maybe\n", "s.yaml:2: verbose: cannot unmarshal !!str `maybe` into bool"},
		{"mapping for scalar", "port: {a: b}\n", "s.yaml:1: port: want a single value, got a mapping"},
		{"bad duration", "port: x\ndelay: soon\n", `s.yaml:2: delay: "soon" is not a duration; write it like 500ms, 2s or 1m30s`},
		{"negative duration", "port: x\ndelay: -1s\n", `s.yaml:2: delay: duration "-1s" is negative`},
		{"bad size", "port: x\nsize: big\n", `s.yaml:2: size: "big" is not a size; write it like 4096, 64Mi or 1Gi`},
		{"list item unknown key", "port: x\nargs: [{nme: y}]\n", "s.yaml:2: args[0].nme: unknown key"},
		{"key twice", "port: x\nport: y\n", "s.yaml:2"},
		{"empty", "", "s.yaml: the file is empty"},
		{"syntax", "port: [x\n", "s.yaml:1: YAML syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c serialConfig
			err := config.Parse("s.yaml", []byte(tt.yaml), &c)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestDecodeAbsentBlock(t *testing.T) {
	var c struct {
		A string `yaml:"a"`
	}
	require.NoError(t, config.Decode("f.yaml", "export.x.config", nil, &c))
	var r struct {
		A string `yaml:"a" required:"true"`
	}
	require.ErrorContains(t, config.Decode("f.yaml", "export.x.config", nil, &r), "export.x.config.a: required key is missing")
}
