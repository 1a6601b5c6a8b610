package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newUICmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("ui", "Print a one-time login URL of the web page", f)
	cmd.Long += `

The web page at ADMIN-URL/ui/ shows the IMDSv2 migration view of the fleet,
live, and can require tokens on ready instances. A browser cannot sign
requests, so this command asks the control plane for a login token and
prints, as the first line, the URL that uses it: open it within 60 seconds;
it works once and starts a session of 12 hours in that browser (kept in the
memory of the server that answered: a restart ends it). Run the command
again for a new URL.`
	cmd.Args = usageArgs(cobra.NoArgs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := f.client(cmd)
		if err != nil {
			return err
		}
		l, err := c.UILogin(cmd.Context())
		if err != nil {
			return adminError(err, c, "get a login URL")
		}
		out := cmd.OutOrStdout()
		fmt.Fprintln(out, strings.TrimSuffix(c.URL(), "/")+l.Path)
		fmt.Fprintf(out, "Open this URL in a browser before %s; it works once. Run `imds ui` again for a new one.\n", l.Expires.Local().Format("15:04:05"))
		return nil
	}
	return cmd
}
