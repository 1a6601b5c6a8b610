package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
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
	cmd.AddCommand(rotate)
	return cmd
}
