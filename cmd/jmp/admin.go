package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/jumpmesh/jumpmesh/drivers/config"
	"github.com/jumpmesh/jumpmesh/exporter"
	coordinatorv1 "github.com/jumpmesh/jumpmesh/proto/jumpmesh/coordinator/v1"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage the lab: clients, exporters and access policies (needs an admin config)",
		Example: `  export JMP_CLIENT_CONFIG=/var/lib/jumpmesh/admin.yaml
  jmp admin create client alice --label team=a -o alice.yaml
  jmp admin create exporter bench-01 --label board=rpi4 --export-from examples/virtual-board.yaml -o bench-01.yaml`,
	}
	var cf clientFlags
	cf.register(cmd)
	create := &cobra.Command{Use: "create", Short: "Create a client, an exporter or an access policy"}
	create.AddCommand(newAdminCreateClientCmd(&cf), newAdminCreateExporterCmd(&cf), newAdminCreatePolicyCmd(&cf))
	get := &cobra.Command{Use: "get", Short: "List clients, exporters or access policies"}
	get.AddCommand(newAdminGetClientsCmd(&cf), newGetExportersCmd(&cf), newAdminGetPoliciesCmd(&cf))
	del := &cobra.Command{Use: "delete", Short: "Delete clients, exporters or access policies (revoking their tokens at once)"}
	del.AddCommand(newAdminDeleteCmd(&cf, "client"), newAdminDeleteCmd(&cf, "exporter"), newAdminDeleteCmd(&cf, "policy"))
	cmd.AddCommand(create, get, del)
	return cmd
}

// identityFlags are shared by `admin create client` and `admin create
// exporter`.
type identityFlags struct {
	labels map[string]string
	out    string
	rotate bool
}

func (f *identityFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().StringToStringVar(&f.labels, "label", nil, "label the "+what+", k=v (repeatable)")
	cmd.Flags().StringVarP(&f.out, "output", "o", "-", "write the config to this file (- for stdout)")
	cmd.Flags().BoolVar(&f.rotate, "rotate", false, "the "+what+" exists: issue it a new token (the old one stops working) and write its config")
}

// endpointFor is where the new config points: the coordinator's advertised
// endpoint, else the admin's own.
func endpointFor(ep *coordinatorv1.Endpoint, admin *coordclient.ClientConfig) (string, coordclient.TLSConfig) {
	if ep.GetUrl() != "" && ep.GetCaFingerprint() != "" {
		return ep.GetUrl(), coordclient.TLSConfig{CAFingerprint: ep.GetCaFingerprint()}
	}
	return admin.Endpoint, admin.TLS
}

// writeConfig writes data to path (stdout for "-"), readable only by its
// owner: it holds a token.
func writeConfig(stdout io.Writer, path string, data []byte) error {
	if path == "-" {
		_, err := stdout.Write(data)
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func newAdminCreateClientCmd(cf *clientFlags) *cobra.Command {
	var f identityFlags
	var save bool
	cmd := &cobra.Command{
		Use:     "client NAME [--label k=v] [-o FILE]",
		Short:   "Create a client identity and write its ClientConfig",
		Example: "  jmp admin create client alice --label team=a -o alice.yaml\n  jmp admin create client ci --save",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			admin, err := coordclient.ResolveClientConfig(cf.config)
			if err != nil {
				return err
			}
			c, err := coordclient.New(coordclient.FromClientConfig(admin))
			if err != nil {
				return err
			}
			defer c.Close()
			name := args[0]
			var tok string
			var ep *coordinatorv1.Endpoint
			if f.rotate {
				resp, err := unwrap(c.Admin.RotateToken(cmd.Context(), connect.NewRequest(&coordinatorv1.RotateTokenRequest{
					Kind: coordinatorv1.IdentityKind_IDENTITY_KIND_CLIENT, Name: name})))
				if err != nil {
					return c.Explain(err)
				}
				tok, ep = resp.GetToken(), resp.GetEndpoint()
			} else {
				resp, err := unwrap(c.Admin.CreateClient(cmd.Context(), connect.NewRequest(&coordinatorv1.CreateClientRequest{Name: name, Labels: f.labels})))
				if err != nil {
					return c.Explain(err)
				}
				tok, ep = resp.GetToken(), resp.GetEndpoint()
			}
			url, tlsConf := endpointFor(ep, admin)
			cfg := &coordclient.ClientConfig{
				APIVersion: coordclient.APIVersion, Kind: coordclient.KindClientConfig,
				Metadata: coordclient.Metadata{Name: name, Labels: f.labels},
				Endpoint: url, TLS: tlsConf, Token: tok,
			}
			if save {
				s, err := coordclient.DefaultStore()
				if err != nil {
					return err
				}
				path, err := s.Save(cfg)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "saved client config %s; pick it with `jmp config client use %s`\n", path, name)
				return nil
			}
			data, err := cfg.Marshal()
			if err != nil {
				return err
			}
			return writeConfig(cmd.OutOrStdout(), f.out, data)
		},
	}
	f.register(cmd, "client")
	cmd.Flags().BoolVar(&save, "save", false, "save it in the config dir ($XDG_CONFIG_HOME/jumpmesh) instead of writing it out")
	return cmd
}

func newAdminCreateExporterCmd(cf *clientFlags) *cobra.Command {
	var f identityFlags
	var exportFrom string
	cmd := &cobra.Command{
		Use:   "exporter NAME [--label k=v] [--export-from FILE] [-o FILE]",
		Short: "Create an exporter identity and write its ExporterConfig",
		Long: `Create an exporter identity and write a complete ExporterConfig: endpoint,
certificate fingerprint, token and labels. Its export: block is copied as it
is from --export-from, else empty. Run it with 'jmp run --exporter-config FILE'.`,
		Example: "  jmp admin create exporter bench-01 --label board=rpi4 --export-from examples/virtual-board.yaml -o bench-01.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			export := "export: {}\n"
			if exportFrom != "" {
				block, err := exportBlock(exportFrom)
				if err != nil {
					return err
				}
				export = block
			}
			admin, err := coordclient.ResolveClientConfig(cf.config)
			if err != nil {
				return err
			}
			c, err := coordclient.New(coordclient.FromClientConfig(admin))
			if err != nil {
				return err
			}
			defer c.Close()
			var tok string
			var ep *coordinatorv1.Endpoint
			labels := f.labels
			if f.rotate {
				resp, err := unwrap(c.Admin.RotateToken(cmd.Context(), connect.NewRequest(&coordinatorv1.RotateTokenRequest{
					Kind: coordinatorv1.IdentityKind_IDENTITY_KIND_EXPORTER, Name: name})))
				if err != nil {
					return c.Explain(err)
				}
				tok, ep = resp.GetToken(), resp.GetEndpoint()
				e, err := unwrap(c.Leases.GetExporter(cmd.Context(), connect.NewRequest(&coordinatorv1.GetExporterRequest{Name: name})))
				if err != nil {
					return c.Explain(err)
				}
				labels = e.GetMetadata().GetLabels()
			} else {
				resp, err := unwrap(c.Admin.CreateExporter(cmd.Context(), connect.NewRequest(&coordinatorv1.CreateExporterRequest{Name: name, Labels: f.labels})))
				if err != nil {
					return c.Explain(err)
				}
				tok, ep = resp.GetToken(), resp.GetEndpoint()
			}
			url, tlsConf := endpointFor(ep, admin)
			head := struct {
				APIVersion string                `yaml:"apiVersion"`
				Kind       string                `yaml:"kind"`
				Metadata   coordclient.Metadata  `yaml:"metadata"`
				Endpoint   string                `yaml:"endpoint"`
				TLS        coordclient.TLSConfig `yaml:"tls"`
				Token      string                `yaml:"token"`
			}{exporter.APIVersion, exporter.Kind, coordclient.Metadata{Name: name, Labels: labels}, url, tlsConf, tok}
			data, err := coordclient.MarshalYAML(head)
			if err != nil {
				return err
			}
			data = append(data, export...)
			// What we write must load.
			if _, err := exporter.Parse(f.out, data); err != nil {
				return fmt.Errorf("the exporter config would not load: %w", err)
			}
			return writeConfig(cmd.OutOrStdout(), f.out, data)
		},
	}
	f.register(cmd, "exporter")
	cmd.Flags().StringVar(&exportFrom, "export-from", "", "copy the export: block from this ExporterConfig")
	return cmd
}

// exportBlock returns the `export:` block of a YAML file as it is written:
// from its key to the next top-level key.
func exportBlock(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--export-from: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", config.Parse(path, data, &struct{}{})
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return "", &config.Error{File: path, Msg: "want a mapping with an export: key"}
	}
	root := doc.Content[0]
	lines := strings.SplitAfter(string(data), "\n")
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "export" {
			continue
		}
		start, end := root.Content[i].Line-1, len(lines)
		if i+2 < len(root.Content) {
			end = root.Content[i+2].Line - 1
		}
		block := strings.Join(lines[start:end], "")
		if !strings.HasSuffix(block, "\n") {
			block += "\n"
		}
		return block, nil
	}
	return "", &config.Error{File: path, Key: "export", Msg: "no export: block to copy"}
}

func newAdminCreatePolicyCmd(cf *clientFlags) *cobra.Command {
	var file, exporters, clients string
	var priority int32
	var maxDuration time.Duration
	var preemptible bool
	var out output
	cmd := &cobra.Command{
		Use:   "policy NAME (-f FILE | --exporters SELECTOR [--clients SELECTOR] [--priority N] [--max-duration D] [--preemptible])",
		Short: "Create or replace an access policy",
		Long: `Create or replace an access policy. Flags make a policy of one rule; a file
can hold several:

  apiVersion: jumpmesh.dev/v1alpha1
  kind: AccessPolicy
  metadata: {name: rpi}
  exporterSelector: board=rpi4
  rules:
    - {clientSelector: team=a, priority: 10, maximumDuration: 4h}
    - {priority: 1, preemptible: true}   # everyone else: spot leases

Exporters no policy selects are open to every client at priority 0.`,
		Example: "  jmp admin create policy rpi --exporters board=rpi4 --clients team=a --priority 10 --max-duration 4h\n  jmp admin create policy rpi -f rpi-policy.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			var p *coordinatorv1.AccessPolicy
			if file != "" {
				var err error
				if p, err = loadPolicy(file); err != nil {
					return err
				}
				if p.Metadata.Name != args[0] {
					return fmt.Errorf("%s names policy %q, not %q", file, p.Metadata.Name, args[0])
				}
			} else {
				if !cmd.Flags().Changed("exporters") {
					return errors.New("give -f FILE, or at least --exporters SELECTOR ('' selects all)")
				}
				rule := &coordinatorv1.AccessRule{ClientSelector: clients, Priority: priority, Preemptible: preemptible}
				if maxDuration > 0 {
					rule.MaximumDuration = durationpb.New(maxDuration)
				}
				p = &coordinatorv1.AccessPolicy{Metadata: &coordinatorv1.ObjectMeta{Name: args[0]},
					ExporterSelector: exporters, Rules: []*coordinatorv1.AccessRule{rule}}
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			got, err := unwrap(c.Admin.ApplyAccessPolicy(cmd.Context(), connect.NewRequest(&coordinatorv1.ApplyAccessPolicyRequest{Policy: p})))
			if err != nil {
				return c.Explain(err)
			}
			return policyPrinter.print(cmd.OutOrStdout(), out.format, []*coordinatorv1.AccessPolicy{got}, true)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "file", "f", "", "read the policy from this YAML file")
	fl.StringVar(&exporters, "exporters", "", "label selector of the exporters it governs")
	fl.StringVar(&clients, "clients", "", "label selector of the clients the rule admits (default all)")
	fl.Int32Var(&priority, "priority", 0, "the rule's priority: higher leases go first")
	fl.DurationVar(&maxDuration, "max-duration", 0, "longest lease the rule allows (default no maximum)")
	fl.BoolVar(&preemptible, "preemptible", false, "leases under the rule are spot leases")
	out.register(cmd)
	return cmd
}

// policyFile is the YAML form of an AccessPolicy.
type policyFile struct {
	APIVersion string `yaml:"apiVersion" required:"true"`
	Kind       string `yaml:"kind" required:"true"`
	Metadata   struct {
		Name   string            `yaml:"name" required:"true"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata" required:"true"`
	ExporterSelector string `yaml:"exporterSelector"`
	Rules            []struct {
		ClientSelector  string        `yaml:"clientSelector"`
		Priority        int32         `yaml:"priority"`
		MaximumDuration time.Duration `yaml:"maximumDuration"`
		Preemptible     bool          `yaml:"preemptible"`
	} `yaml:"rules" required:"true"`
}

func loadPolicy(path string) (*coordinatorv1.AccessPolicy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	var f policyFile
	if err := config.Parse(path, data, &f); err != nil {
		return nil, err
	}
	if f.Kind != "AccessPolicy" {
		return nil, &config.Error{File: path, Key: "kind", Msg: fmt.Sprintf("want AccessPolicy, got %q", f.Kind)}
	}
	p := &coordinatorv1.AccessPolicy{
		Metadata:         &coordinatorv1.ObjectMeta{Name: f.Metadata.Name, Labels: f.Metadata.Labels},
		ExporterSelector: f.ExporterSelector,
	}
	for _, r := range f.Rules {
		rule := &coordinatorv1.AccessRule{ClientSelector: r.ClientSelector, Priority: r.Priority, Preemptible: r.Preemptible}
		if r.MaximumDuration > 0 {
			rule.MaximumDuration = durationpb.New(r.MaximumDuration)
		}
		p.Rules = append(p.Rules, rule)
	}
	return p, nil
}

func newAdminGetClientsCmd(cf *clientFlags) *cobra.Command {
	return newGetCmdFor(cf, getSpec[*coordinatorv1.Client]{
		cmd: &cobra.Command{
			Use:     "clients [NAME...]",
			Aliases: []string{"client"},
			Short:   "List clients",
			Example: "  jmp admin get clients -l team=kernel",
		},
		selectorHelp: "only clients matching this label selector",
		list: func(ctx context.Context, c *coordclient.Client, selector string, _ bool) ([]*coordinatorv1.Client, error) {
			resp, err := unwrap(c.Admin.ListClients(ctx, connect.NewRequest(&coordinatorv1.ListClientsRequest{Selector: selector})))
			return resp.GetClients(), err
		},
		get: func(ctx context.Context, c *coordclient.Client, name string) (*coordinatorv1.Client, error) {
			return unwrap(c.Admin.GetClient(ctx, connect.NewRequest(&coordinatorv1.GetClientRequest{Name: name})))
		},
		printer: clientPrinter,
	})
}

func newAdminGetPoliciesCmd(cf *clientFlags) *cobra.Command {
	return newGetCmdFor(cf, getSpec[*coordinatorv1.AccessPolicy]{
		cmd: &cobra.Command{
			Use:     "policies [NAME...]",
			Aliases: []string{"policy"},
			Short:   "List access policies",
			Example: "  jmp admin get policies -o yaml",
		},
		list: func(ctx context.Context, c *coordclient.Client, _ string, _ bool) ([]*coordinatorv1.AccessPolicy, error) {
			resp, err := unwrap(c.Admin.ListAccessPolicies(ctx, connect.NewRequest(&coordinatorv1.ListAccessPoliciesRequest{})))
			return resp.GetPolicies(), err
		},
		get: func(ctx context.Context, c *coordclient.Client, name string) (*coordinatorv1.AccessPolicy, error) {
			return unwrap(c.Admin.GetAccessPolicy(ctx, connect.NewRequest(&coordinatorv1.GetAccessPolicyRequest{Name: name})))
		},
		printer: policyPrinter,
	})
}

func newAdminDeleteCmd(cf *clientFlags, what string) *cobra.Command {
	return &cobra.Command{
		Use:   what + " NAME...",
		Short: "Delete " + what + "s",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			for _, name := range args {
				var err error
				switch what {
				case "client":
					_, err = c.Admin.DeleteClient(ctx, connect.NewRequest(&coordinatorv1.DeleteClientRequest{Name: name}))
				case "exporter":
					_, err = c.Admin.DeleteExporter(ctx, connect.NewRequest(&coordinatorv1.DeleteExporterRequest{Name: name}))
				default:
					_, err = c.Admin.DeleteAccessPolicy(ctx, connect.NewRequest(&coordinatorv1.DeleteAccessPolicyRequest{Name: name}))
				}
				if err != nil {
					return c.Explain(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s deleted\n", what, name)
			}
			return nil
		},
	}
}
