package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	jumpmeshv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/v1"
	"github.com/jumpmesh/jumpmesh/proto/wire"
	"google.golang.org/protobuf/proto"
)

// HostEnv names the variable that `jmp shell` sets to the session's socket.
const HostEnv = "JMP_HOST"

// Opener opens a new stream to the exporter for each operation.
type Opener interface {
	OpenStream(ctx context.Context) (wire.Stream, error)
}

// Session is a client's connection to one exporter. It is safe for
// concurrent use: every operation runs on its own stream.
type Session struct {
	opener Opener

	mu     sync.Mutex
	report *jumpmeshv1.Report
}

// New returns a session that opens streams with o.
func New(o Opener) *Session { return &Session{opener: o} }

// ErrNoHost is returned by FromEnv outside a `jmp shell`.
var ErrNoHost = errors.New(HostEnv + " is not set: run this inside `jmp shell` (for example `jmp shell --exporter-config examples/virtual-board.yaml`), or set " + HostEnv + " to an exporter's socket")

// FromEnv connects to the exporter that JMP_HOST names.
func FromEnv() (*Session, error) {
	host := os.Getenv(HostEnv)
	if host == "" {
		return nil, ErrNoHost
	}
	return Dial(host)
}

// Dial returns a session to host: "unix:///path/to/socket" or a bare path.
func Dial(host string) (*Session, error) {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok && !strings.HasPrefix(host, "/") && !strings.HasPrefix(host, ".") {
		return nil, fmt.Errorf("exporter address %q: want unix:///path/to/socket", host)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("exporter socket %s: %w (is the `jmp shell` that made it still running?)", path, err)
	}
	return New(UnixOpener(path)), nil
}

// Report returns the exporter's driver tree. It is read once per session.
func (s *Session) Report(ctx context.Context) (*jumpmeshv1.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.report != nil {
		return s.report, nil
	}
	st, err := s.request(ctx, &jumpmeshv1.StreamHeader{Op: &jumpmeshv1.StreamHeader_Report{Report: &jumpmeshv1.ReportRequest{}}})
	if err != nil {
		return nil, fmt.Errorf("get report: %w", err)
	}
	defer st.close()
	var r jumpmeshv1.Report
	if err := st.recvOnly(&r); err != nil {
		return nil, fmt.Errorf("get report: %w", err)
	}
	s.report = &r
	return &r, nil
}

// Driver returns the driver at path: its name, or names joined by dots for
// a child ("board.serial").
func (s *Session) Driver(ctx context.Context, path string) (*Driver, error) {
	r, err := s.Report(ctx)
	if err != nil {
		return nil, err
	}
	paths := Paths(r)
	for uuid, p := range paths {
		if p == path {
			i := slices.IndexFunc(r.GetDrivers(), func(d *jumpmeshv1.DriverReport) bool { return d.GetUuid() == uuid })
			return &Driver{session: s, Path: path, Report: r.GetDrivers()[i]}, nil
		}
	}
	known := make([]string, 0, len(paths))
	for _, p := range paths {
		known = append(known, p)
	}
	slices.Sort(known)
	return nil, &wire.Error{Code: wire.NotFound, Message: fmt.Sprintf("exporter %s has no driver %q; it has: %s", r.GetName(), path, strings.Join(known, ", "))}
}

// Paths maps each driver's uuid to its dotted path in the tree.
func Paths(r *jumpmeshv1.Report) map[string]string {
	byUUID := map[string]*jumpmeshv1.DriverReport{}
	for _, d := range r.GetDrivers() {
		byUUID[d.GetUuid()] = d
	}
	paths := map[string]string{}
	var pathOf func(d *jumpmeshv1.DriverReport, depth int) string
	pathOf = func(d *jumpmeshv1.DriverReport, depth int) string {
		if p, ok := paths[d.GetUuid()]; ok {
			return p
		}
		p := d.GetName()
		// depth bounds a report whose parents form a cycle.
		if parent, ok := byUUID[d.GetParentUuid()]; ok && depth < len(byUUID) {
			p = pathOf(parent, depth+1) + "." + p
		}
		paths[d.GetUuid()] = p
		return p
	}
	for _, d := range r.GetDrivers() {
		pathOf(d, 0)
	}
	return paths
}

// Logs streams the exporter's log entries at or above min to fn until ctx
// ends, fn returns an error, or the exporter closes the stream.
func (s *Session) Logs(ctx context.Context, min jumpmeshv1.Severity, fn func(*jumpmeshv1.LogEntry) error) error {
	st, err := s.request(ctx, &jumpmeshv1.StreamHeader{Op: &jumpmeshv1.StreamHeader_Logs{Logs: &jumpmeshv1.LogStreamRequest{MinSeverity: min}}})
	if err != nil {
		return fmt.Errorf("stream logs: %w", err)
	}
	defer st.close()
	err = st.recvEach(func() proto.Message { return &jumpmeshv1.LogEntry{} }, func(m proto.Message) error {
		return fn(m.(*jumpmeshv1.LogEntry))
	})
	if err != nil {
		return fmt.Errorf("stream logs: %w", st.fail(ctx, err))
	}
	return nil
}
