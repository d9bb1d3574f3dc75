package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jumpmesh/jumpmesh/client/coordclient"
	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage the client configs in $XDG_CONFIG_HOME/jumpmesh"}
	client := &cobra.Command{
		Use:   "client",
		Short: "List, pick, show and import client configs",
		Example: `  jmp config client import alice.yaml
  jmp config client list
  jmp config client use alice`,
	}
	client.AddCommand(newConfigListCmd(), newConfigUseCmd(), newConfigShowCmd(), newConfigImportCmd())
	cmd.AddCommand(client)
	return cmd
}

func newConfigListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the client configs; * marks the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := coordclient.DefaultStore()
			if err != nil {
				return err
			}
			names, err := s.List()
			if err != nil {
				return err
			}
			cur, err := s.Current()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tENDPOINT")
			for _, name := range names {
				mark, endpoint := "", "(unreadable)"
				if name == cur {
					mark = "*"
				}
				if c, err := coordclient.LoadClientConfig(s.Path(name)); err == nil {
					endpoint = c.Endpoint
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, name, endpoint)
			}
			return tw.Flush()
		},
	}
}

func newConfigUseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make a client config the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := coordclient.DefaultStore()
			if err != nil {
				return err
			}
			if err := s.Use(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "now using client config %s\n", args[0])
			return nil
		},
	}
}

func newConfigImportCmd() *cobra.Command {
	var name string
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Copy a client config into the config dir (it becomes current if none is)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := coordclient.LoadClientConfig(args[0])
			if err != nil {
				return err
			}
			if name != "" {
				c.Metadata.Name = name
			}
			s, err := coordclient.DefaultStore()
			if err != nil {
				return err
			}
			path, err := s.Save(c)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s as %s (%s)\n", args[0], c.Metadata.Name, path)
			return nil
		},
	}
}

func newConfigShowCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "show [NAME]",
		Short: "Show a client config (the one in use by default), without its token",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c *coordclient.ClientConfig
			var err error
			if len(args) == 1 {
				s, serr := coordclient.DefaultStore()
				if serr != nil {
					return serr
				}
				c, err = coordclient.LoadClientConfig(s.Path(args[0]))
			} else {
				c, err = coordclient.ResolveClientConfig(file)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "file:      %s\nname:      %s\nendpoint:  %s\n", c.Path, c.Metadata.Name, c.Endpoint)
			if c.TLS.CAFingerprint != "" {
				fmt.Fprintf(w, "trusts:    certificate %s\n", c.TLS.CAFingerprint)
			} else {
				fmt.Fprintf(w, "trusts:    CAs in %s\n", c.TLS.CAFile)
			}
			fmt.Fprintf(w, "token:     %s\n", describeToken(c.Token))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "client-config", "", "show this file instead")
	return cmd
}

// describeToken says what a token is and when it expires, without
// checking its signature (only the coordinator can).
func describeToken(raw string) string {
	claims := jwt.MapClaims{}
	tok, _, err := jwt.NewParser().ParseUnverified(raw, claims)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	typ, _ := tok.Header["typ"].(string)
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return typ + ", no expiry"
	}
	state := "valid until"
	if exp.Before(time.Now()) {
		state = "EXPIRED"
	}
	return fmt.Sprintf("%s, %s %s", typ, state, exp.Local().Format(time.DateTime))
}
