package exporter

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jumpmesh/jumpmesh/drivers"
	"github.com/jumpmesh/jumpmesh/drivers/config"
	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"google.golang.org/protobuf/proto"
)

// driverUUIDSpace namespaces driver UUIDs, which are derived from the
// exporter's name and the driver's path so that they stay the same across
// restarts and clients can keep them.
var driverUUIDSpace = uuid.MustParse("5f0b8d2e-8c1e-4a43-9d0e-6a1f3c7b2e10")

// validName is what a driver or exporter may be called: a `j` subcommand
// and a DNS label alike.
var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// node is one driver in the tree.
type node struct {
	report *jumpmeshv1.DriverReport
	driver drivers.Driver
	ifaces map[string]drivers.Interface
	log    *slog.Logger
}

// Exporter holds one device's built driver tree.
type Exporter struct {
	cfg    *Config
	log    *slog.Logger
	logs   *logHub
	nodes  []*node // parents before children
	byUUID map[string]*node
	shared *drivers.Shared
	report *jumpmeshv1.Report

	closeOnce sync.Once
	closeErr  error
}

// New builds the driver tree of cfg. On error, every driver built so far is
// closed again.
func New(cfg *Config, log *slog.Logger) (*Exporter, error) {
	if !validName.MatchString(cfg.Metadata.Name) {
		return nil, &config.Error{File: cfg.File, Key: "metadata.name", Msg: fmt.Sprintf("%q is not a valid name: use lower-case letters, digits and '-'", cfg.Metadata.Name)}
	}
	logs := newLogHub()
	log = slog.New(teeHandler{next: log.Handler(), hub: logs})
	e := &Exporter{cfg: cfg, log: log, logs: logs, byUUID: map[string]*node{}, shared: &drivers.Shared{}}
	if err := e.build(cfg.Export, nil, ""); err != nil {
		e.Close()
		return nil, err
	}
	e.report = &jumpmeshv1.Report{Name: cfg.Metadata.Name, Labels: cfg.Metadata.Labels}
	for _, n := range e.nodes {
		e.report.Drivers = append(e.report.Drivers, n.report)
	}
	return e, nil
}

func (e *Exporter) build(entries DriverMap, parent *node, parentPath string) error {
	for _, entry := range entries {
		path := entry.Name
		if parentPath != "" {
			path = parentPath + "." + entry.Name
		}
		key := "export." + path
		if !validName.MatchString(entry.Name) {
			return &config.Error{File: e.cfg.File, Line: entry.Line, Key: key, Msg: fmt.Sprintf("%q is not a valid driver name: use lower-case letters, digits and '-'", entry.Name)}
		}
		typ, ok := drivers.Lookup(entry.Type)
		if !ok {
			return &config.Error{File: e.cfg.File, Line: entry.Line, Key: key + ".type", Msg: fmt.Sprintf("unknown driver type %q; known types: %s", entry.Type, knownTypes())}
		}
		n := &node{report: &jumpmeshv1.DriverReport{
			Uuid:        uuid.NewSHA1(driverUUIDSpace, []byte(e.cfg.Metadata.Name+"/"+path)).String(),
			Name:        entry.Name,
			Type:        entry.Type,
			Labels:      entry.Labels,
			Description: entry.Description,
		}}
		if parent != nil {
			n.report.ParentUuid = parent.report.GetUuid()
		}
		n.log = e.log.With("driver", path)
		b := &drivers.Build{
			Name: entry.Name, Path: path, Exporter: e.cfg.Metadata.Name,
			File: e.cfg.File, Dir: e.cfg.Dir, Log: n.log,
			Config: &entry.Config, Shared: e.shared,
		}
		if entry.Config.Kind == 0 {
			b.Config = nil
		}
		d, err := typ.New(b)
		if err != nil {
			var ce *config.Error
			if errors.As(err, &ce) {
				return err
			}
			return &config.Error{File: e.cfg.File, Line: entry.Line, Key: key, Msg: fmt.Sprintf("%s: %v", entry.Type, err)}
		}
		n.driver = d
		n.ifaces = map[string]drivers.Interface{}
		e.nodes = append(e.nodes, n)
		e.byUUID[n.report.GetUuid()] = n
		for _, iface := range d.Interfaces() {
			if err := iface.Validate(); err != nil {
				return fmt.Errorf("driver type %s: %w", entry.Type, err)
			}
			n.ifaces[string(iface.Service.FullName())] = iface
			n.report.Interfaces = append(n.report.Interfaces, interfaceReport(iface))
		}
		if err := e.build(entry.Children, n, path); err != nil {
			return err
		}
	}
	return nil
}

func interfaceReport(iface drivers.Interface) *jumpmeshv1.InterfaceReport {
	sd := iface.Service
	r := &jumpmeshv1.InterfaceReport{
		Name:        string(sd.FullName()),
		Description: proto.GetExtension(sd.Options(), jumpmeshv1.E_InterfaceDescription).(string),
	}
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		r.Methods = append(r.Methods, &jumpmeshv1.MethodReport{
			Name:         string(md.Name()),
			Description:  proto.GetExtension(md.Options(), jumpmeshv1.E_MethodDescription).(string),
			Kind:         drivers.KindOf(md),
			RequestType:  string(md.Input().FullName()),
			ResponseType: string(md.Output().FullName()),
		})
	}
	return r
}

func knownTypes() string {
	var names []string
	for _, t := range drivers.Types() {
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return "(none registered)"
	}
	return strings.Join(names, ", ")
}

// Name is the exporter's name.
func (e *Exporter) Name() string { return e.cfg.Metadata.Name }

// Report describes the driver tree. It must not be modified.
func (e *Exporter) Report() *jumpmeshv1.Report { return e.report }

// Close closes every driver, children before parents, then the objects
// they shared. It is safe to call more than once.
func (e *Exporter) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		for _, n := range slices.Backward(e.nodes) {
			if err := n.driver.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close driver %s: %w", n.report.GetName(), err))
			}
		}
		for _, o := range e.shared.All() {
			if c, ok := o.(io.Closer); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close shared object: %w", err))
				}
			}
		}
		e.logs.close()
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
