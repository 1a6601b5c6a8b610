package cli

import (
	"encoding/base64"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/controlplane"
)

func newRelayCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("relay", "Manage relays: forwarders that sign the instance id of each request", f)
	cmd.AddCommand(newRelayPutCmd(f), newRelayLsCmd(f), newRelayRmCmd(f))
	return cmd
}

func newRelayPutCmd(f *adminFlags) *cobra.Command {
	var addresses []string
	cmd := &cobra.Command{
		Use:   "put NAME --address ADDR...",
		Short: "Create or replace a relay, with a new secret",
		Long: `Create or replace a relay: requests from its addresses must carry an instance
id and an HMAC-SHA256 signature over it with the relay's secret. The server
makes a new 32-byte secret, printed here in base64 on standard output, once:
it is never shown again. Putting an existing relay replaces its secret.`,
		Example: `  imds relay put hv1 --address 10.1.0.1 --address fd00:1::1 > hv1.secret`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFlags(cmd, []string{"address"}); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			rec, err := c.PutRelay(cmd.Context(), args[0], addresses, nil)
			if err != nil {
				return adminError(err, c, "relay "+args[0])
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "relay %s at %s; its secret (base64), shown once:\n", rec.Name, strings.Join(rec.Addresses, ", "))
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(rec.Secret))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&addresses, "address", nil, "an address the relay sends from (repeatable)")
	return cmd
}

func newRelayLsCmd(f *adminFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the relays (never their secrets)",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			relays, err := c.Relays(cmd.Context())
			if err != nil {
				return adminError(err, c, "list relays")
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), controlplane.RelayList{Relays: relays})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESSES")
			for _, r := range relays {
				fmt.Fprintf(tw, "%s\t%s\n", r.Name, strings.Join(r.Addresses, ","))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &output, "table", "json")
	return cmd
}

func newRelayRmCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Remove relays",
		Args:    usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := c.DeleteRelay(cmd.Context(), name); err != nil {
					return adminError(err, c, "relay "+name)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "relay %s removed\n", name)
			}
			return nil
		},
	}
}
