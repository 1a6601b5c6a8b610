package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
)

func newRoleCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("role", "Manage the roles whose credentials instances receive", f)
	cmd.AddCommand(newRolePutCmd(f), newRoleLsCmd(f), newRoleGetCmd(f), newRoleRmCmd(f))
	return cmd
}

func newRolePutCmd(f *adminFlags) *cobra.Command {
	var p putFlags
	cmd := &cobra.Command{
		Use:   "put NAME -f FILE",
		Short: "Create or replace a role",
		Long: `Create or replace a role from a YAML file holding its credential source, in the
format of an entry of roles: in the configuration file (static, assume-role or
process). -f - reads standard input. The server keeps secret keys and never
shows them again.`,
		Example: `  imds role put web -f role.yaml

  # role.yaml
  assume-role:
    role-arn: arn:aws:iam::123456789012:role/web`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := p.read(cmd)
			if err != nil {
				return err
			}
			var role config.Role
			if err := config.DecodeYAML(data, &role); err != nil {
				return &exitError{ExitInvalid, fmt.Errorf("%s: %w", p.file, err)}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			rec, created, err := c.PutRole(cmd.Context(), args[0], &role, p.cond())
			if err != nil {
				return adminError(err, c, "role "+args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role %s %s (%s, revision %d)\n", rec.Name, putVerb(created, "created"), rec.Source, rec.Revision)
			return nil
		},
	}
	p.add(cmd, "role", "the role's source", "create only: fail if the role exists")
	return cmd
}

func newRoleLsCmd(f *adminFlags) *cobra.Command {
	return newAdminLsCmd(f, "List the roles", "roles", (*adminclient.Client).Roles,
		func(roles []adminapi.RoleRecord) any { return adminapi.RoleList{Roles: roles} },
		"NAME\tSOURCE\tREVISION",
		func(r adminapi.RoleRecord) string { return fmt.Sprintf("%s\t%s\t%d", r.Name, r.Source, r.Revision) })
}

func newRoleGetCmd(f *adminFlags) *cobra.Command {
	return newAdminGetCmd(f, "role", "get NAME", "Show a role's source, without its secret keys", (*adminclient.Client).Role)
}

func newRoleRmCmd(f *adminFlags) *cobra.Command {
	return newAdminRmCmd(f, removal{
		kind: "role", arg: "NAME", short: "Remove roles", ifMatch: true,
		del: (*adminclient.Client).DeleteRole,
	})
}
