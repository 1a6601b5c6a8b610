package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
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
	return newAdminLsCmd(f, "List the relays (never their secrets)", "relays", (*adminclient.Client).Relays,
		func(relays []adminapi.RelayRecord) any { return adminapi.RelayList{Relays: relays} },
		"NAME\tADDRESSES",
		func(r adminapi.RelayRecord) string {
			return fmt.Sprintf("%s\t%s", r.Name, strings.Join(r.Addresses, ","))
		})
}

func newRelayRmCmd(f *adminFlags) *cobra.Command {
	return newAdminRmCmd(f, removal{
		kind: "relay", arg: "NAME", short: "Remove relays",
		del: func(c *adminclient.Client, ctx context.Context, name string, _ adminclient.Cond) error {
			return c.DeleteRelay(ctx, name)
		},
	})
}
