package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/migration"
)

func newMigrationCmd() *cobra.Command {
	f := &adminFlags{}
	var asJSON bool
	cmd := newAdminGroup("migration [INSTANCE-ID]", "Show who still uses IMDSv1 and what breaks when tokens are required", f)
	cmd.Long += `

Without an argument: a table of the fleet, one instance a line (its
http-tokens, verdict, callers by class, last IMDSv1 use). With an instance id:
that instance's callers, one a line, with the evidence for their class.
Classes: v2 (every request carried a token), v1 (IMDSv1 without ever asking
for a token: upgrade the SDK), v1-fallback (asked for a token, then fell back
to IMDSv1: fix the hop limit or the network), v1-rejected (IMDSv1 refused
because tokens are required: broken now).`
	cmd.Args = usageArgs(cobra.MaximumNArgs(1))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := f.client(cmd)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if len(args) == 1 {
			in, err := c.MigrationInstance(cmd.Context(), args[0])
			if err != nil {
				return adminError(err, c, "read the migration view")
			}
			if asJSON {
				return printJSON(out, in)
			}
			printMigrationInstance(out, in)
			return nil
		}
		v, err := c.Migration(cmd.Context())
		if err != nil {
			return adminError(err, c, "read the migration view")
		}
		if asJSON {
			return printJSON(out, v.Instances)
		}
		printMigrationFleet(out, v)
		return nil
	}
	cmd.AddCommand(newMigrationEnforceCmd(f), newMigrationCheckCmd(f))
	return cmd
}

func printMigrationFleet(w io.Writer, v *migration.View) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tHTTP-TOKENS\tVERDICT\tV2\tV1\tV1-FALLBACK\tV1-REJECTED\tLAST IMDSV1")
	for _, in := range v.Instances {
		verdict := "ready"
		if !in.Ready {
			verdict = "not ready"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", in.InstanceID, in.HTTPTokens, verdict,
			in.Classes[migration.ClassV2], in.Classes[migration.ClassV1], in.Classes[migration.ClassV1Fallback], in.Classes[migration.ClassV1Rejected], lastUse(in.LastV1))
	}
	tw.Flush()
	fmt.Fprintf(w, "window %s; `imds migration INSTANCE-ID` shows an instance's callers\n", v.Window)
}

func printMigrationInstance(w io.Writer, in *migration.Instance) {
	fmt.Fprintf(w, "%s  http-tokens %s  %s\n", in.InstanceID, in.HTTPTokens, in.Verdict)
	if len(in.Callers) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tADDRESS\tSDK\tLAST SEEN\tTOKEN PUT\tV2\tV1\tREJECTED\tPATHS V1\tUSER-AGENT")
	for _, c := range in.Callers {
		sdk := c.SDK
		if c.SDKVersion != "" {
			sdk += " " + c.SDKVersion
		}
		paths := strings.Join(c.PathsV1, ",")
		if paths == "" {
			paths = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", c.Class, c.Address, sdk, c.LastSeen.Format(time.RFC3339),
			c.Requests.TokenPuts, c.Requests.V2, c.Requests.V1, c.Requests.V1Rejected, paths, c.UserAgent)
	}
	tw.Flush()
	for _, c := range in.Callers {
		if c.Class != migration.ClassV2 {
			fmt.Fprintf(w, "%s %s (%s): %s\n", c.Class, c.Address, c.SDK, c.Evidence)
			if c.Process != "" {
				fmt.Fprintf(w, "  process: %s\n", c.Process)
			}
		}
	}
}

func lastUse(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func newMigrationEnforceCmd(f *adminFlags) *cobra.Command {
	var req migration.EnforceRequest
	cmd := &cobra.Command{
		Use:   "enforce (INSTANCE-ID... | --ready)",
		Short: "Require IMDSv2 on instances where no caller would break",
		Long: `Set http-tokens to required on the instances named, or on every ready one
with --ready. An instance whose callers used IMDSv1 within the window is
refused, and its callers are named; the command then exits 1. --dry-run says
what would be done and changes nothing.`,
		Args: usageArgs(cobra.ArbitraryArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Ready == (len(args) > 0) {
				return &exitError{ExitUsage, errors.New("name instances or give --ready (not both)")}
			}
			req.InstanceIDs = args
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.MigrationEnforce(cmd.Context(), req)
			if err != nil {
				return adminError(err, c, "enforce IMDSv2")
			}
			if len(res.Refused) == 0 {
				fmt.Fprint(cmd.OutOrStdout(), res.Text())
				return nil
			}
			done := *res
			done.Refused = nil
			if len(done.Enforced)+len(done.AlreadyRequired) > 0 {
				fmt.Fprint(cmd.OutOrStdout(), done.Text())
			}
			return &exitError{ExitFailure, errors.New(res.RefusedText())}
		},
	}
	cmd.Flags().BoolVar(&req.Ready, "ready", false, "every instance that is ready and still optional")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "say what would be done; change nothing")
	return cmd
}

func newMigrationCheckCmd(f *adminFlags) *cobra.Command {
	var (
		instance string
		allow    []string
	)
	cmd := &cobra.Command{
		Use:   "check [--instance ID] [--allow CLASS]",
		Short: "Exit 1, naming the callers, when anything used IMDSv1 (a CI gate)",
		Long: `Exit 1 when a caller of the fleet (or of --instance) used IMDSv1 within the
window, naming each such caller and why; exit 0 when every caller used
IMDSv2. Run an application against imds with http-tokens optional, then this:
it proves the application works where IMDSv2 is required. --allow CLASS
(v1, v1-fallback or v1-rejected, repeatable) lets that class pass.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var allowed []migration.Class
			for _, a := range allow {
				class, err := migration.ParseClass(a)
				if err != nil || class == migration.ClassV2 {
					return &exitError{ExitUsage, fmt.Errorf("--allow %q: want v1, v1-fallback or v1-rejected", a)}
				}
				allowed = append(allowed, class)
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			var insts []migration.Instance
			if instance != "" {
				in, err := c.MigrationInstance(cmd.Context(), instance)
				if err != nil {
					return adminError(err, c, "read the migration view")
				}
				insts = []migration.Instance{*in}
			} else {
				v, err := c.Migration(cmd.Context())
				if err != nil {
					return adminError(err, c, "read the migration view")
				}
				insts = v.Instances
			}
			var failed []string
			callers := 0
			for _, in := range insts {
				callers += len(in.Callers)
				for _, cl := range in.Breaking() {
					if slices.Contains(allowed, cl.Class) {
						continue
					}
					failed = append(failed, fmt.Sprintf("%s %s %s %q: %s", in.InstanceID, cl.Class, cl.Address, cl.UserAgent, cl.Evidence))
				}
			}
			if len(failed) > 0 {
				return &exitError{ExitFailure, fmt.Errorf("%d %s used IMDSv1:\n%s", len(failed), plural(len(failed), "caller", "callers"), strings.Join(failed, "\n"))}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d %s of %d %s, none used IMDSv1\n", callers, plural(callers, "caller", "callers"), len(insts), plural(len(insts), "instance", "instances"))
			return nil
		},
	}
	cmd.Flags().StringVar(&instance, "instance", "", "check this instance only")
	cmd.Flags().StringArrayVar(&allow, "allow", nil, "a class that passes: v1, v1-fallback or v1-rejected (repeatable)")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
