package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Output formats, as kubectl's: tables for people, JSON and YAML for
// scripts, names for shell pipelines.
const (
	outTable = "table"
	outWide  = "wide"
	outJSON  = "json"
	outYAML  = "yaml"
	outName  = "name"
)

// output is the -o flag of commands that print resources.
type output struct{ format string }

func (o *output) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", outTable, "output format: table, wide, json, yaml or name")
}

func (o *output) check() error {
	switch o.format {
	case outTable, outWide, outJSON, outYAML, outName:
		return nil
	}
	return fmt.Errorf("unknown output format %q; use table, wide, json, yaml or name", o.format)
}

// printer prints resources of one kind.
type printer[T proto.Message] struct {
	header []string
	wide   []string
	row    func(T, bool) []string
	name   func(T) string
}

// print writes msgs in the format. single prints one object rather than a
// list in JSON and YAML.
func (p printer[T]) print(w io.Writer, format string, msgs []T, single bool) error {
	switch format {
	case outName:
		for _, m := range msgs {
			fmt.Fprintln(w, p.name(m))
		}
		return nil
	case outJSON, outYAML:
		return printStructured(w, format, msgs, single)
	}
	wide := format == outWide
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := p.header
	if wide {
		header = append(slices.Clone(header), p.wide...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, m := range msgs {
		fmt.Fprintln(tw, strings.Join(p.row(m, wide), "\t"))
	}
	return tw.Flush()
}

var jsonOpts = protojson.MarshalOptions{Multiline: true, Indent: "  "}

func printStructured[T proto.Message](w io.Writer, format string, msgs []T, single bool) error {
	var b strings.Builder
	if single && len(msgs) == 1 {
		data, err := jsonOpts.Marshal(msgs[0])
		if err != nil {
			return err
		}
		b.Write(data)
	} else {
		b.WriteString("[")
		for i, m := range msgs {
			if i > 0 {
				b.WriteString(",")
			}
			data, err := protojson.Marshal(m)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		b.WriteString("]")
	}
	if format == outJSON {
		_, err := fmt.Fprintln(w, b.String())
		return err
	}
	// JSON is YAML: decoding into a node keeps the fields' order.
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(b.String()), &n); err != nil {
		return err
	}
	clearStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	return enc.Close()
}

// clearStyle drops the flow style and quotes JSON brought, for block YAML.
func clearStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		clearStyle(c)
	}
}

// localTime formats a timestamp in local time for tables.
func localTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05 MST")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// enumText turns LEASE_REASON_ALL_BUSY into "all busy".
func enumText(s, prefix string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(s, prefix), "_", " "))
}

func leaseState(l *coordinatorv1.Lease) string {
	return enumText(l.GetStatus().GetState().String(), "LEASE_STATE_")
}

func leaseReason(l *coordinatorv1.Lease) string {
	r := enumText(l.GetStatus().GetReason().String(), "LEASE_REASON_")
	if l.GetStatus().GetState() == coordinatorv1.LeaseState_LEASE_STATE_PENDING {
		if n := l.GetStatus().GetQueuePosition(); n > 0 {
			r += fmt.Sprintf(" (%d ahead)", n)
		}
	}
	return r
}

var leasePrinter = printer[*coordinatorv1.Lease]{
	header: []string{"NAME", "CLIENT", "EXPORTER", "STATE", "REASON", "BEGIN", "END"},
	wide:   []string{"SELECTOR", "PRIORITY", "TAGS", "MESSAGE"},
	row: func(l *coordinatorv1.Lease, wide bool) []string {
		st := l.GetStatus()
		exporter := st.GetExporter()
		if exporter == "" {
			exporter = l.GetSpec().GetExporter()
		}
		row := []string{l.GetMetadata().GetName(), l.GetSpec().GetClient(), orDash(exporter), leaseState(l), leaseReason(l),
			localTime(st.GetBeginTime()), localTime(st.GetEndTime())}
		if wide {
			row = append(row, orDash(l.GetSpec().GetSelector()), fmt.Sprint(st.GetPriority()),
				labelString(l.GetSpec().GetTags()), orDash(st.GetMessage()))
		}
		return row
	},
	name: func(l *coordinatorv1.Lease) string { return l.GetMetadata().GetName() },
}

var exporterPrinter = printer[*coordinatorv1.Exporter]{
	header: []string{"NAME", "STATUS", "LEASE", "LABELS"},
	wide:   []string{"LAST SEEN", "DRIVERS"},
	row: func(e *coordinatorv1.Exporter, wide bool) []string {
		row := []string{e.GetMetadata().GetName(), enumText(e.GetStatus().String(), "EXPORTER_STATUS_"),
			orDash(e.GetLease()), labelString(e.GetMetadata().GetLabels())}
		if wide {
			row = append(row, localTime(e.GetLastSeen()), fmt.Sprint(len(e.GetReport().GetDrivers())))
		}
		return row
	},
	name: func(e *coordinatorv1.Exporter) string { return e.GetMetadata().GetName() },
}

var clientPrinter = printer[*coordinatorv1.Client]{
	header: []string{"NAME", "LABELS", "CREATED"},
	row: func(c *coordinatorv1.Client, _ bool) []string {
		return []string{c.GetMetadata().GetName(), labelString(c.GetMetadata().GetLabels()), localTime(c.GetMetadata().GetCreateTime())}
	},
	name: func(c *coordinatorv1.Client) string { return c.GetMetadata().GetName() },
}

var policyPrinter = printer[*coordinatorv1.AccessPolicy]{
	header: []string{"NAME", "EXPORTERS", "RULES"},
	row: func(p *coordinatorv1.AccessPolicy, _ bool) []string {
		var rules []string
		for _, r := range p.GetRules() {
			s := fmt.Sprintf("%s: priority %d", orDash(r.GetClientSelector()), r.GetPriority())
			if d := r.GetMaximumDuration().AsDuration(); d > 0 {
				s += ", max " + d.String()
			}
			if r.GetPreemptible() {
				s += ", spot"
			}
			rules = append(rules, s)
		}
		return []string{p.GetMetadata().GetName(), orDash(p.GetExporterSelector()), strings.Join(rules, "; ")}
	},
	name: func(p *coordinatorv1.AccessPolicy) string { return p.GetMetadata().GetName() },
}

// parseTime reads a time for --begin and --end: RFC 3339, a local
// "2006-01-02 15:04", or "+DURATION" from now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: %w", s, err)
		}
		return now.Add(dur), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: write it as RFC 3339 (2026-08-21T14:00:00Z), local \"2026-08-21 14:00\", or +30m from now", s)
}
