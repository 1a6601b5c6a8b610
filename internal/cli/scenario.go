package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/events/scenario"
)

func newScenarioCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("scenario", "Play a file of timed event steps against a running server", f)
	run := &cobra.Command{
		Use:   "run FILE",
		Short: "Play a scenario, printing each step as it happens",
		Long: `Play a scenario: a YAML file of steps, each at a time from the start of the
run, acting on instances through the admin API. The file is checked in full
before the first step; a step that fails stops the run.

  steps:
    - at: 0s                    # from the start of the run
      name: notice              # optional: later steps can use same-as: notice
      filters:                  # target: instances: [ids], filters (with
        tag:pool: spot          #   fraction and seed), or same-as: STEP
      fraction: 0.3
      seed: 7
      event: {type: rebalance}  # action: event (as imds instance event),
    - at: 30s                   #   state: stop|start|terminate, or, on the
      same-as: notice           #   maintenance event of same-as: cancel: true,
      event: {type: spot, action: terminate, in: 2m}   # complete: true, reschedule: 3h`,
		Example: `  imds scenario run spot-reclaim.yaml`,
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := readScenario(args[0])
			if err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			if err := scenario.Run(cmd.Context(), s, c, nil, cmd.OutOrStdout()); err != nil {
				return adminError(err, c, "scenario")
			}
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Check a scenario file without playing it",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := readScenario(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d steps\n", args[0], len(s.Steps))
			return nil
		},
	}
	cmd.AddCommand(run, check)
	return cmd
}

// readScenario reads and checks a scenario file; a bad one is ExitInvalid.
func readScenario(path string) (*scenario.Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{ExitInvalid, err}
	}
	s, err := scenario.Parse(data)
	if err != nil {
		return nil, &exitError{ExitInvalid, fmt.Errorf("%s: %w", path, err)}
	}
	return s, nil
}
