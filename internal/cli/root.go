// Package cli is the imds command line: one file per subcommand, flags turned
// into options, no logic of its own.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/version"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and failed
	ExitUsage   = 2 // bad flags or arguments
	ExitInvalid = 3 // a configuration file is invalid
)

// exitError carries an exit code to Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Run executes the command line args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "imds",
		Short:         "An EC2-compatible Instance Metadata Service",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate(version.Full() + "\n")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{ExitUsage, err}
	})
	root.AddCommand(newServeCmd(), newValidateCmd(), newGetCmd(), newDoctorCmd(), newIdentityCmd(), newInstanceCmd(), newRoleCmd(), newRelayCmd(), newKeysCmd(), newMigrationCmd(), newUICmd(), newScenarioCmd(), newGuardCmd(), newVersionCmd())
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "imds:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitFailure
}

// defaultDataDir is /var/lib/imds for root, else the user's state directory.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/imds"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "imds")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "imds")
	}
	return ".imds"
}
