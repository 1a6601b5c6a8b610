package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
)

// adminFlags are the flags of the commands that talk to the control plane.
type adminFlags struct {
	url, credentials, dataDir string
}

const adminHelp = `
These commands call the control plane's admin API at --admin-url (default
` + adminclient.DefaultURL + `, or IMDS_ADMIN_URL), signing each request with an
operator key: from --credentials FILE if given, else from IMDS_ACCESS_KEY_ID and
IMDS_SECRET_ACCESS_KEY, else from the file imds serve writes on first start,
DATA_DIR/credentials. The file is an AWS shared-credentials file whose [imds]
profile holds aws_access_key_id and aws_secret_access_key.`

// newAdminGroup returns a command group whose subcommands share the admin flags.
func newAdminGroup(use, short string, f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: short + ".\n" + adminHelp, Args: cobra.NoArgs}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.url, "admin-url", adminclient.DefaultURL, "the control plane's URL (env IMDS_ADMIN_URL)")
	pf.StringVar(&f.credentials, "credentials", "", "shared-credentials file with an [imds] profile (default DATA_DIR/credentials)")
	pf.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "the server's data directory, where it writes credentials")
	return cmd
}

// client builds the admin client from the flags and the environment.
func (f *adminFlags) client(cmd *cobra.Command) (*adminclient.Client, error) {
	u := f.url
	if !cmd.Flags().Changed("admin-url") {
		if env := os.Getenv("IMDS_ADMIN_URL"); env != "" {
			u = env
		}
	}
	creds, err := f.creds(cmd)
	if err != nil {
		return nil, err
	}
	c, err := adminclient.New(adminclient.Options{URL: u, Credentials: creds})
	if err != nil {
		return nil, &exitError{ExitUsage, err}
	}
	return c, nil
}

func (f *adminFlags) creds(cmd *cobra.Command) (adminapi.Credentials, error) {
	if cmd.Flags().Changed("credentials") {
		c, err := adminapi.ReadCredentialsFile(f.credentials)
		if err != nil {
			return c, &exitError{ExitFailure, err}
		}
		return c, nil
	}
	id, secret := os.Getenv("IMDS_ACCESS_KEY_ID"), os.Getenv("IMDS_SECRET_ACCESS_KEY")
	switch {
	case id != "" && secret != "":
		return adminapi.Credentials{AccessKeyID: id, SecretAccessKey: secret}, nil
	case id != "" || secret != "":
		return adminapi.Credentials{}, &exitError{ExitUsage, errors.New("set both IMDS_ACCESS_KEY_ID and IMDS_SECRET_ACCESS_KEY, or neither")}
	}
	path := filepath.Join(f.dataDir, "credentials")
	c, err := adminapi.ReadCredentialsFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, &exitError{ExitFailure, fmt.Errorf("no operator credentials: %s does not exist (imds serve writes it on first start; "+
			"give the server's --data-dir or --credentials FILE, or set IMDS_ACCESS_KEY_ID and IMDS_SECRET_ACCESS_KEY)", path)}
	}
	if err != nil {
		return c, &exitError{ExitFailure, err}
	}
	return c, nil
}

// adminError turns a failed call into a message that says what to do, and
// an exit code.
func adminError(err error, c *adminclient.Client, what string) error {
	var (
		ue *adminclient.UnreachableError
		ae *adminclient.Error
	)
	switch {
	case errors.As(err, &ue):
		return &exitError{ExitFailure, fmt.Errorf("%w\n(is imds serve running there? Point --admin-url or IMDS_ADMIN_URL at its control-plane listener)", err)}
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		return &exitError{ExitFailure, fmt.Errorf("the control plane at %s refused the credentials: %s: %s\n(check --credentials, IMDS_ACCESS_KEY_ID/IMDS_SECRET_ACCESS_KEY, or the server's --data-dir)", c.URL(), ae.Code, ae.Message)}
	case errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed:
		return &exitError{ExitFailure, fmt.Errorf("%s\n(someone else changed it: read it again and retry)", ae.Message)}
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return &exitError{ExitFailure, errors.New(ae.Message)}
	case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
		return &exitError{ExitInvalid, fmt.Errorf("%s: refused:\n%s", what, ae.Message)}
	case errors.As(err, &ae):
		return &exitError{ExitFailure, fmt.Errorf("%s: %s", what, ae.Message)}
	}
	return &exitError{ExitFailure, fmt.Errorf("%s: %w", what, err)}
}

// usageArgs makes cobra's argument checks exit with ExitUsage.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &exitError{ExitUsage, err}
		}
		return nil
	}
}

// checkFlags refuses, with ExitUsage, a command without each of required
// and one that sets both flags of an exclusive pair. (Cobra's own checks
// would exit with ExitFailure.)
func checkFlags(cmd *cobra.Command, required []string, exclusive ...[2]string) error {
	for _, name := range required {
		if !cmd.Flags().Changed(name) {
			return &exitError{ExitUsage, fmt.Errorf("--%s is required", name)}
		}
	}
	for _, pair := range exclusive {
		if cmd.Flags().Changed(pair[0]) && cmd.Flags().Changed(pair[1]) {
			return &exitError{ExitUsage, fmt.Errorf("give --%s or --%s, not both", pair[0], pair[1])}
		}
	}
	return nil
}

// outputFlag is -o/--output: table (the default), json or yaml.
func outputFlag(cmd *cobra.Command, p *string, formats ...string) {
	cmd.Flags().StringVarP(p, "output", "o", formats[0], fmt.Sprintf("output format: %v", formats))
}

func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return &exitError{ExitUsage, fmt.Errorf("--output %q: want one of %v", o, formats)}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printYAML prints v as YAML with its JSON keys: v goes through JSON, whose
// object order YAML keeps, and each node is set to block style.
func printYAML(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return err
	}
	blockStyle(&n)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	return enc.Close()
}

func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// readInput reads a file, or standard input for "-".
func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(path)
}

// putFlags are the flags of a put command that reads a YAML file: -f FILE,
// --if-match REVISION and --create.
type putFlags struct {
	file    string
	ifMatch int64
	create  bool
}

// add defines the flags on cmd. kind names what is put and contents what
// the file holds, in their help.
func (p *putFlags) add(cmd *cobra.Command, kind, contents, createHelp string) {
	cmd.Flags().StringVarP(&p.file, "file", "f", "", "YAML file with "+contents+" (- for standard input)")
	cmd.Flags().Int64Var(&p.ifMatch, "if-match", 0, "replace only if the "+kind+" is at this revision")
	cmd.Flags().BoolVar(&p.create, "create", false, createHelp)
}

// read checks the flags and reads the file (standard input for "-").
func (p *putFlags) read(cmd *cobra.Command) ([]byte, error) {
	if err := checkFlags(cmd, []string{"file"}, [2]string{"if-match", "create"}); err != nil {
		return nil, err
	}
	data, err := readInput(cmd, p.file)
	if err != nil {
		return nil, &exitError{ExitFailure, err}
	}
	return data, nil
}

// cond is the condition the flags put on the write.
func (p *putFlags) cond() adminclient.Cond {
	return adminclient.Cond{IfMatch: p.ifMatch, Create: p.create}
}

// putVerb says what a put did: "updated", or made if created.
func putVerb(created bool, made string) string {
	if created {
		return made
	}
	return "updated"
}

// newAdminLsCmd returns an ls command that prints what list returns: a table of
// header and one row per item (columns separated by tabs), or with -o json
// asJSON(items). what names the items in errors.
func newAdminLsCmd[T any](f *adminFlags, short, what string,
	list func(*adminclient.Client, context.Context) ([]T, error),
	asJSON func([]T) any, header string, row func(T) string,
) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   short,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "table", "json"); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			items, err := list(c, cmd.Context())
			if err != nil {
				return adminError(err, c, "list "+what)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), asJSON(items))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, header)
			for _, it := range items {
				fmt.Fprintln(tw, row(it))
			}
			return tw.Flush()
		},
	}
	outputFlag(cmd, &output, "table", "json")
	return cmd
}

// newAdminGetCmd returns a get command that prints what get returns for its one
// argument as YAML, or with -o json as JSON. kind names it in errors.
func newAdminGetCmd[T any](f *adminFlags, kind, use, short string,
	get func(*adminclient.Client, context.Context, string) (T, error),
) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			v, err := get(c, cmd.Context(), args[0])
			if err != nil {
				return adminError(err, c, kind+" "+args[0])
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), v)
			}
			return printYAML(cmd.OutOrStdout(), v)
		},
	}
	outputFlag(cmd, &output, "yaml", "json")
	return cmd
}

// removal describes an rm command.
type removal struct {
	kind  string // what it removes, as errors name it: "role"
	arg   string // its arguments in the usage line: "NAME"
	short string
	bare  bool // print "NAME removed", not "KIND NAME removed"
	// verb replaces "rm" in the usage line and "removed" in the output
	// ("revoke" prints "revoked").
	verb string
	// ifMatch gives the command --if-match, which takes one argument only.
	ifMatch bool
	del     func(c *adminclient.Client, ctx context.Context, name string, cond adminclient.Cond) error
}

// newAdminRmCmd returns an rm command that removes each of its arguments in turn
// and stops at the first failure.
func newAdminRmCmd(f *adminFlags, r removal) *cobra.Command {
	var ifMatch int64
	use, done, aliases := "rm", "removed", []string{"delete"}
	if r.verb != "" {
		use, done, aliases = r.verb, r.verb+"d", nil
	}
	cmd := &cobra.Command{
		Use:     use + " " + r.arg + "...",
		Aliases: aliases,
		Short:   r.short,
		Args:    usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ifMatch != 0 && len(args) > 1 {
				return &exitError{ExitUsage, fmt.Errorf("--if-match needs exactly one %s", r.arg)}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := r.del(c, cmd.Context(), name, adminclient.Cond{IfMatch: ifMatch}); err != nil {
					return adminError(err, c, r.kind+" "+name)
				}
				if r.bare {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", name, done)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", r.kind, name, done)
				}
			}
			return nil
		},
	}
	if r.ifMatch {
		cmd.Flags().Int64Var(&ifMatch, "if-match", 0, "remove only if the "+r.kind+" is at this revision")
	}
	return cmd
}
