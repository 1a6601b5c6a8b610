package cli

import (
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/credentials"
	"github.com/imds/imds/internal/fleet"
)

func newValidateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration file with the loader serve uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(path)
			if err != nil {
				return &exitError{ExitInvalid, err}
			}
			creds := credentials.NewManager(nil, time.Now)
			if c.Guard != nil {
				// Roles signed with the host's credentials build; nothing
				// is fetched here.
				creds.SetUpstreamCredentials(aws.AnonymousCredentials{})
			}
			if err := creds.Update(c.Roles); err != nil {
				return &exitError{ExitInvalid, err}
			}
			if _, err := fleet.FromConfig(c, time.Now, creds); err != nil {
				return &exitError{ExitInvalid, err}
			}
			if c.Guard != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: guard of %s, %d callers, %d roles: valid\n", path, c.Guard.Upstream, len(c.Guard.Callers), len(c.Roles))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d instances, %d roles: valid\n", path, len(c.Instances), len(c.Roles))
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "the file to check")
	cmd.MarkFlagRequired("config")
	return cmd
}
