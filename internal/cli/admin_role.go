package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/controlplane"
)

func newRoleCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("role", "Manage the roles whose credentials instances receive", f)
	cmd.AddCommand(newRolePutCmd(f), newRoleLsCmd(f), newRoleGetCmd(f), newRoleRmCmd(f))
	return cmd
}

func newRolePutCmd(f *adminFlags) *cobra.Command {
	var (
		file    string
		ifMatch int64
		create  bool
	)
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
			if err := checkFlags(cmd, []string{"file"}, [2]string{"if-match", "create"}); err != nil {
				return err
			}
			data, err := readInput(cmd, file)
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			var role config.Role
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&role); err != nil {
				return &exitError{ExitInvalid, fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			rec, created, err := c.PutRole(cmd.Context(), args[0], &role, adminclient.Cond{IfMatch: ifMatch, Create: create})
			if err != nil {
				return adminError(err, c, "role "+args[0])
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role %s %s (%s, revision %d)\n", rec.Name, verb, rec.Source, rec.Revision)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "YAML file with the role's source (- for standard input)")
	cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "replace only if the role is at this revision")
	cmd.Flags().BoolVar(&create, "create", false, "create only: fail if the role exists")
	return cmd
}

func newRoleLsCmd(f *adminFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the roles",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			roles, err := c.Roles(cmd.Context())
			if err != nil {
				return adminError(err, c, "list roles")
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), controlplane.RoleList{Roles: roles})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSOURCE\tREVISION")
			for _, r := range roles {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Name, r.Source, r.Revision)
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &output, "table", "json")
	return cmd
}

func newRoleGetCmd(f *adminFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a role's source, without its secret keys",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			rec, err := c.Role(cmd.Context(), args[0])
			if err != nil {
				return adminError(err, c, "role "+args[0])
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), rec)
			}
			return printYAML(cmd.OutOrStdout(), rec)
		},
	}
	outputFlag(cmd, &output, "yaml", "json")
	return cmd
}

func newRoleRmCmd(f *adminFlags) *cobra.Command {
	var ifMatch int64
	cmd := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Remove roles",
		Args:    usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ifMatch != 0 && len(args) > 1 {
				return &exitError{ExitUsage, errors.New("--if-match needs exactly one NAME")}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := c.DeleteRole(cmd.Context(), name, adminclient.Cond{IfMatch: ifMatch}); err != nil {
					return adminError(err, c, "role "+name)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "role %s removed\n", name)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "remove only if the role is at this revision")
	return cmd
}
