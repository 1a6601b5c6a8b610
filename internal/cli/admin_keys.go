package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
)

func newKeysCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("keys", "Manage the server's keys", f)
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new IMDSv2 token signing key",
		Long: `Make a new IMDSv2 token signing key. Tokens signed with the previous keys stay
valid until they expire (at most six hours); then those keys are dropped.
Only key ids are shown, never the keys.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			keys, err := c.RotateTokenKey(cmd.Context())
			if err != nil {
				return adminError(err, c, "rotate the token key")
			}
			ids := make([]string, len(keys.Keys))
			for i, k := range keys.Keys {
				ids[i] = strconv.Itoa(int(k.ID))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token signing key %d; keys accepted: %s\n", keys.Signing, strings.Join(ids, ", "))
			return nil
		},
	}
	cmd.AddCommand(rotate, newOperatorKeysCmd(f))
	return cmd
}

func newOperatorKeysCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Manage the operator keys that sign control-plane requests",
		Args:  usageArgs(cobra.NoArgs),
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Make a new operator key",
		Long: `Make a new operator access key. Its secret is printed once, on standard
output, as the two lines of an AWS shared-credentials profile; it is never
shown again. Every replica accepts the key as soon as it is stored.`,
		Example: `  (echo '[imds-ops]'; imds keys operator add) >> ~/.aws/credentials`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.AddOperatorKey(cmd.Context())
			if err != nil {
				return adminError(err, c, "add an operator key")
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "operator key %s; its secret is shown once:\n", k.AccessKeyID)
			fmt.Fprintf(cmd.OutOrStdout(), "aws_access_key_id = %s\naws_secret_access_key = %s\n", k.AccessKeyID, k.SecretAccessKey)
			return nil
		},
	}
	ls := newAdminLsCmd(f, "List the operator keys (never their secrets)", "operator keys", (*adminclient.Client).OperatorKeys,
		func(keys []adminapi.OperatorKey) any { return adminapi.OperatorKeyList{Keys: keys} },
		"ACCESS KEY ID\tCREATED",
		func(k adminapi.OperatorKey) string {
			created := "-"
			if !k.Created.IsZero() {
				created = k.Created.UTC().Format("2006-01-02T15:04:05Z")
			}
			return k.AccessKeyID + "\t" + created
		})
	revoke := newAdminRmCmd(f, removal{
		kind: "operator key", arg: "ACCESS_KEY_ID", verb: "revoke",
		short: "Revoke operator keys: every replica refuses them within a second",
		del: func(c *adminclient.Client, ctx context.Context, id string, _ adminclient.Cond) error {
			return c.RevokeOperatorKey(ctx, id)
		},
	})
	cmd.AddCommand(add, ls, revoke)
	return cmd
}
