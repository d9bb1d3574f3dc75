// Package script is the `shell` driver type: named commands, each a
// text/template of a shell script, that the exporter runs on its host with
// the caller's arguments, safely quoted.
package script

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/shell"
	"github.com/jumpmesh/jumpmesh/proto/wire"
)

func init() {
	drivers.Register(drivers.Type{
		Name:        "shell",
		Description: "Named shell commands, with arguments, run on the exporter's host.",
		New:         New,
	})
}

// defaultShell runs the scripts unless the config names another.
const defaultShell = "/bin/sh"

// defaultTimeout bounds a command whose config gives no timeout, so that
// a hung script cannot hold a device forever; long enough for most
// flashing or provisioning scripts.
const defaultTimeout = 5 * time.Minute

var (
	validCommand = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	// validArg names an argument that templates can write as {{.name}}.
	validArg = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

type config struct {
	Shell    string                   `yaml:"shell"`
	Commands map[string]commandConfig `yaml:"commands" required:"true"`
}

type commandConfig struct {
	Run         string               `yaml:"run" required:"true"`
	Description string               `yaml:"description"`
	Args        map[string]argConfig `yaml:"args"`
	Env         map[string]string    `yaml:"env"`
	Timeout     drivers.Duration     `yaml:"timeout"`
	Dir         string               `yaml:"dir"`
}

type argConfig struct {
	Description string `yaml:"description"`
	Default     string `yaml:"default"`
	Required    bool   `yaml:"required"`
}

// Driver runs its configured commands.
type Driver struct {
	shell    string
	commands map[string]*command
	names    []string // sorted
}

type command struct {
	shell.Command
	tmpl    *template.Template
	env     []string
	timeout time.Duration
	dir     string
}

// New builds the driver from b's config.
func New(b *drivers.Build) (drivers.Driver, error) {
	var cfg config
	if err := b.Decode(&cfg); err != nil {
		return nil, err
	}
	d := &Driver{shell: cfg.Shell, commands: map[string]*command{}}
	if d.shell == "" {
		d.shell = defaultShell
	}
	if _, err := exec.LookPath(d.shell); err != nil {
		return nil, b.Errorf("shell %s cannot be run: %v", d.shell, err)
	}
	if len(cfg.Commands) == 0 {
		return nil, b.Errorf("commands is empty; give at least one, like commands: {hello: {run: \"echo hello\"}}")
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Commands)) {
		c, err := newCommand(b, name, cfg.Commands[name])
		if err != nil {
			return nil, err
		}
		d.commands[name] = c
		d.names = append(d.names, name)
	}
	return d, nil
}

func newCommand(b *drivers.Build, name string, cc commandConfig) (*command, error) {
	if !validCommand.MatchString(name) {
		return nil, b.ErrorfAt("commands."+name, "use letters, digits, '_', '.' and '-' in command names")
	}
	c := &command{Command: shell.Command{Name: name, Description: cc.Description}, timeout: time.Duration(cc.Timeout), dir: b.Dir}
	if c.timeout == 0 {
		c.timeout = defaultTimeout
	}
	if cc.Dir != "" {
		c.dir = cc.Dir
		if !filepath.IsAbs(c.dir) {
			c.dir = filepath.Join(b.Dir, c.dir)
		}
		if fi, err := os.Stat(c.dir); err != nil || !fi.IsDir() {
			return nil, b.ErrorfAt("commands."+name+".dir", "%s is not a folder", c.dir)
		}
	}
	sample := map[string]string{}
	for _, an := range slices.Sorted(maps.Keys(cc.Args)) {
		a := cc.Args[an]
		if !validArg.MatchString(an) {
			return nil, b.ErrorfAt("commands."+name+".args."+an, "use letters, digits and '_' in argument names, not starting with a digit")
		}
		if a.Required && a.Default != "" {
			return nil, b.ErrorfAt("commands."+name+".args."+an, "is required and has a default; drop one")
		}
		c.Args = append(c.Args, shell.Arg{Name: an, Description: a.Description, Default: a.Default, Required: a.Required})
		sample[an] = quote(a.Default)
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(cc.Run)
	if err != nil {
		return nil, b.ErrorfAt("commands."+name+".run", "not a valid template: %v", err)
	}
	// Running the template once now catches a reference to an argument
	// that was not declared at start-up rather than at the first run.
	if err := tmpl.Execute(io.Discard, sample); err != nil {
		return nil, b.ErrorfAt("commands."+name+".run", "%v; declare every {{.name}} it uses under args", err)
	}
	c.tmpl = tmpl
	for _, k := range slices.Sorted(maps.Keys(cc.Env)) {
		c.env = append(c.env, k+"="+cc.Env[k])
	}
	return c, nil
}

// Interfaces implements drivers.Driver.
func (d *Driver) Interfaces() []drivers.Interface { return []drivers.Interface{shell.Bind(d)} }

// Close implements drivers.Driver; runs end with their calls.
func (d *Driver) Close() error { return nil }

// List implements shell.Server.
func (d *Driver) List(context.Context) ([]shell.Command, error) {
	cmds := make([]shell.Command, 0, len(d.names))
	for _, n := range d.names {
		cmds = append(cmds, d.commands[n].Command)
	}
	return cmds, nil
}

// Run implements shell.Server.
func (d *Driver) Run(ctx context.Context, name string, args map[string]string, stdout, stderr io.Writer) (int, error) {
	c, ok := d.commands[name]
	if !ok {
		return 0, wire.Errorf(wire.NotFound, "no command %q; the commands are: %s", name, strings.Join(d.names, ", "))
	}
	script, err := c.script(args)
	if err != nil {
		return 0, err
	}
	return run(ctx, process{shell: d.shell, script: script, dir: c.dir, env: c.env, timeout: c.timeout, name: name}, stdout, stderr)
}

// script fills the command's template with the caller's arguments, each
// shell-quoted so that no value can be more than one word to the shell.
func (c *command) script(args map[string]string) (string, error) {
	values := map[string]string{}
	for k := range args {
		if !slices.ContainsFunc(c.Args, func(a shell.Arg) bool { return a.Name == k }) {
			if len(c.Args) == 0 {
				return "", wire.Errorf(wire.InvalidArgument, "command %s takes no arguments, got %s", c.Name, k)
			}
			return "", wire.Errorf(wire.InvalidArgument, "command %s has no argument %q; its arguments: %s", c.Name, k, c.argList())
		}
	}
	for _, a := range c.Args {
		v, ok := args[a.Name]
		switch {
		case !ok && a.Required:
			desc := ""
			if a.Description != "" {
				desc = " (" + a.Description + ")"
			}
			return "", wire.Errorf(wire.InvalidArgument, "command %s needs argument %s%s: add %s=VALUE", c.Name, a.Name, desc, a.Name)
		case !ok:
			v = a.Default
		}
		values[a.Name] = quote(v)
	}
	var b strings.Builder
	if err := c.tmpl.Execute(&b, values); err != nil {
		return "", wire.Errorf(wire.Internal, "command %s: fill in its template: %v", c.Name, err)
	}
	return b.String(), nil
}

func (c *command) argList() string {
	var parts []string
	for _, a := range c.Args {
		switch {
		case a.Required:
			parts = append(parts, a.Name+" (required)")
		case a.Default != "":
			parts = append(parts, fmt.Sprintf("%s (default %q)", a.Name, a.Default))
		default:
			parts = append(parts, a.Name)
		}
	}
	return strings.Join(parts, ", ")
}

// quote makes s one word for a POSIX shell: single quotes, within which
// nothing is special, with each ' written as '\”.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
