package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/config"
)

func newInstanceCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := newAdminGroup("instance", "Register, list, change and remove instances", f)
	cmd.AddCommand(newInstancePutCmd(f), newInstanceLsCmd(f), newInstanceGetCmd(f), newInstanceRmCmd(f), newInstanceEventCmd(f))
	return cmd
}

func newInstancePutCmd(f *adminFlags) *cobra.Command {
	var p putFlags
	cmd := &cobra.Command{
		Use:   "put -f FILE",
		Short: "Register instances or replace their specs",
		Long: `Register an instance, or replace its spec, from a YAML file: one instance
in the format of an entry of instances: in the configuration file, or a file
with an instances: list. -f - reads standard input. The instances of a list
are written all or none: if one breaks a rule (an address another instance
holds, tokens its account defaults enforce), none is written and the error
names each instance and rule.

An instance's metadata options are resolved when it is registered; replacing
its spec changes only the options the new spec sets differently.`,
		Example: `  imds instance put -f vm.yaml
  imds instance put -f vm.yaml --if-match 42   # only if nobody changed it since revision 42`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := p.read(cmd)
			if err != nil {
				return err
			}
			specs, err := parseInstances(data)
			if err != nil {
				return &exitError{ExitInvalid, fmt.Errorf("%s: %w", p.file, err)}
			}
			if p.ifMatch != 0 && len(specs) > 1 {
				return &exitError{ExitUsage, fmt.Errorf("--if-match needs a file with one instance; %s has %d", p.file, len(specs))}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			if len(specs) == 1 {
				rec, created, err := c.PutInstance(cmd.Context(), specs[0], p.cond())
				if err != nil {
					return adminError(err, c, "instance "+specs[0].InstanceID)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (revision %d)\n", rec.Spec.InstanceID, putVerb(created, "registered"), rec.Revision)
				return nil
			}
			// Several instances go in one request: all or none.
			written, err := c.PutInstances(cmd.Context(), specs)
			for _, w := range written {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s (revision %d)\n", w.Spec.InstanceID, putVerb(w.Created, "registered"), w.Revision)
			}
			if err != nil {
				return adminError(err, c, fmt.Sprintf("%d instances of %s", len(specs), p.file))
			}
			return nil
		},
	}
	p.add(cmd, "instance", "the instance spec", "register only: fail if the instance exists")
	return cmd
}

// parseInstances reads one instance spec, or the instances: list of a
// configuration file. Unknown keys are refused.
func parseInstances(data []byte) ([]config.Instance, error) {
	var probe yaml.Node
	if err := yaml.Unmarshal(data, &probe); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(probe.Content) == 0 {
		return nil, errors.New("no instance in the file")
	}
	decode := func(v any) error { return config.DecodeYAML(data, v) }
	if root := probe.Content[0]; root.Kind == yaml.MappingNode && slices.ContainsFunc(root.Content, func(n *yaml.Node) bool { return n.Value == "instances" }) {
		var file struct {
			Instances []config.Instance    `yaml:"instances"`
			Other     map[string]yaml.Node `yaml:",inline"`
		}
		if err := decode(&file); err != nil {
			return nil, err
		}
		for k, n := range file.Other {
			return nil, fmt.Errorf("line %d: %s: only instances: is read here (put roles with imds role put)", n.Line, k)
		}
		if len(file.Instances) == 0 {
			return nil, errors.New("instances: the list is empty")
		}
		for i, in := range file.Instances {
			if in.InstanceID == "" {
				return nil, fmt.Errorf("instances[%d].instance-id: required", i)
			}
		}
		return file.Instances, nil
	}
	var in config.Instance
	if err := decode(&in); err != nil {
		return nil, err
	}
	if in.InstanceID == "" {
		return nil, errors.New("instance-id: required")
	}
	return []config.Instance{in}, nil
}

func newInstanceLsCmd(f *adminFlags) *cobra.Command {
	return newAdminLsCmd(f, "List the instances and their metadata options", "instances", (*adminclient.Client).Instances,
		func(list []adminapi.InstanceSummary) any { return adminapi.InstanceList{Instances: list} },
		"ID\tSTATE\tADDRESSES\tTOKENS\tHOP\tENDPOINT\tREVISION",
		func(in adminapi.InstanceSummary) string {
			addrs := strings.Join(in.Addresses, ",")
			if addrs == "" {
				addrs = "-"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%d", in.InstanceID, in.State, addrs, in.Options.HTTPTokens,
				in.Options.HTTPPutResponseHopLimit, in.Options.HTTPEndpoint, in.Revision)
		})
}

func newInstanceGetCmd(f *adminFlags) *cobra.Command {
	var specOnly bool
	cmd := newAdminGetCmd(f, "instance", "get ID", "Show an instance: its spec, resolved options, launch time and revision",
		func(c *adminclient.Client, ctx context.Context, id string) (any, error) {
			rec, err := c.Instance(ctx, id)
			if err != nil {
				return nil, err
			}
			if specOnly {
				return rec.Spec, nil
			}
			return rec, nil
		})
	cmd.Example = `  imds instance get i-0123456789abcdef0
  imds instance get i-0123456789abcdef0 --spec > vm.yaml   # edit, then: imds instance put -f vm.yaml`
	cmd.Flags().BoolVar(&specOnly, "spec", false, "print only the spec, in the format instance put reads")
	return cmd
}

func newInstanceRmCmd(f *adminFlags) *cobra.Command {
	return newAdminRmCmd(f, removal{
		kind: "instance", arg: "ID", short: "Remove instances", bare: true, ifMatch: true,
		del: (*adminclient.Client).DeleteInstance,
	})
}

func newInstanceEventCmd(f *adminFlags) *cobra.Command {
	var (
		spot, maintenance, at, description, lifecycle string
		cancel, complete                              string
		rebalance, clear                              bool
		in, duration                                  time.Duration
		filters                                       []string
		fraction                                      float64
		seed                                          int64
	)
	cmd := &cobra.Command{
		Use:   "event [ID] (--spot ACTION | --rebalance | --maintenance CODE | --lifecycle STATE | --cancel EVENT | --complete EVENT | --clear)",
		Short: "Inject, cancel or complete events: Spot, rebalance, maintenance, Auto Scaling",
		Long: `Make an instance's metadata announce an event, as EC2 does, to test what
runs inside it (a node termination handler, a drain script):

  --spot ACTION        spot/instance-action (and spot/termination-time for
                       terminate): ACTION is terminate, stop or hibernate, at
                       --at, else in --in (default 2m, EC2's two-minute
                       warning). When that time comes the instance stops or
                       terminates.
  --rebalance          events/recommendations/rebalance, noticed now (or --at/--in)
  --maintenance CODE   an entry of events/maintenance/scheduled: CODE is
                       system-reboot, instance-reboot, system-maintenance,
                       instance-retirement or instance-stop, from --at/--in
                       for --duration (default 2h); it moves to history as
                       completed when the window ends
  --lifecycle STATE    autoscaling/target-lifecycle-state: InService, Standby,
                       Detached, Terminated, Warmed:Stopped, Warmed:Running,
                       Warmed:Hibernated or Warmed:Terminated
  --cancel EVENT       move a maintenance event to history as canceled
  --complete EVENT     move a maintenance event to history as completed
  --clear              remove the Spot interruption, recommendation and
                       maintenance events

Without an ID, the event goes to every running instance that matches the
--filter flags (EC2's DescribeInstances filters: tag:KEY=VALUE,
instance-type=TYPE, availability-zone=ZONE, ...; values separated by
commas), or to a --fraction of them chosen by --seed.

The change is served from the next request.`,
		Example: `  imds instance event i-0123456789abcdef0 --spot terminate --in 2m
  imds instance event i-0123456789abcdef0 --rebalance
  imds instance event i-0123456789abcdef0 --maintenance system-reboot --at 2026-03-02T03:00:00Z
  imds instance event i-0123456789abcdef0 --cancel instance-event-0123456789abcdef0
  imds instance event i-0123456789abcdef0 --lifecycle Terminated
  imds instance event i-0123456789abcdef0 --clear
  imds instance event --filter tag:pool=spot --fraction 0.3 --seed 7 --spot terminate`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFlags(cmd, nil, [2]string{"in", "at"}); err != nil {
				return err
			}
			ev := adminapi.EventRequest{Time: at, Description: description}
			n := 0
			if spot != "" {
				ev.Type, ev.Action = adminapi.EventSpot, spot
				n++
			}
			if rebalance {
				ev.Type = adminapi.EventRebalance
				n++
			}
			if maintenance != "" {
				ev.Type, ev.Code = adminapi.EventMaintenance, maintenance
				n++
			}
			if lifecycle != "" {
				ev.Type, ev.LifecycleState = adminapi.EventLifecycle, lifecycle
				n++
			}
			end, endVerb := cancel, "cancel"
			if complete != "" {
				end, endVerb = complete, "complete"
			}
			for _, b := range []bool{clear, cancel != "", complete != ""} {
				if b {
					n++
				}
			}
			if n != 1 {
				return &exitError{ExitUsage, errors.New("give one of --spot, --rebalance, --maintenance, --lifecycle, --cancel, --complete and --clear")}
			}
			if cmd.Flags().Changed("in") {
				ev.In = in.String()
			}
			if cmd.Flags().Changed("duration") {
				ev.Duration = duration.String()
			}
			if (clear || end != "") && (ev.Time != "" || ev.In != "" || ev.Duration != "" || ev.Description != "") {
				return &exitError{ExitUsage, errors.New("--clear, --cancel and --complete take no --at, --in, --duration or --description")}
			}
			fleetWide := len(args) == 0
			selects := len(filters) > 0 || cmd.Flags().Changed("fraction")
			switch {
			case !fleetWide && selects:
				return &exitError{ExitUsage, errors.New("give an instance ID or --filter/--fraction, not both")}
			case fleetWide && !selects:
				return &exitError{ExitUsage, errors.New("give an instance ID, or --filter/--fraction to choose many instances")}
			case fleetWide && ev.Type == "":
				return &exitError{ExitUsage, errors.New("--clear, --cancel and --complete need an instance ID")}
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			if fleetWide {
				req := adminapi.FleetEventRequest{Fraction: fraction, Seed: seed, Event: ev}
				for _, fl := range filters {
					name, values, ok := strings.Cut(fl, "=")
					if !ok || name == "" || values == "" {
						return &exitError{ExitUsage, fmt.Errorf("--filter %q: want NAME=VALUE[,VALUE...], such as tag:pool=spot", fl)}
					}
					req.Filters = append(req.Filters, adminapi.Filter{Name: name, Values: strings.Split(values, ",")})
				}
				res, err := c.AddFleetEvent(cmd.Context(), req)
				if err != nil {
					return adminError(err, c, "fleet event")
				}
				w := cmd.OutOrStdout()
				for _, id := range res.Instances {
					fmt.Fprintf(w, "%s: %s\n", id, ev.Type)
				}
				fmt.Fprintf(w, "%d of %d matching instances\n", len(res.Instances), res.Matched)
				return nil
			}
			var rec *adminapi.InstanceRecord
			switch {
			case clear:
				rec, err = c.ClearEvents(cmd.Context(), args[0])
			case end != "":
				rec, err = c.EndEvent(cmd.Context(), args[0], end, endVerb)
			default:
				rec, err = c.AddEvent(cmd.Context(), args[0], ev)
			}
			if err != nil {
				return adminError(err, c, "instance "+args[0])
			}
			printEvents(cmd, rec)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&spot, "spot", "", "announce a Spot interruption: terminate, stop or hibernate")
	fl.BoolVar(&rebalance, "rebalance", false, "announce a rebalance recommendation")
	fl.StringVar(&maintenance, "maintenance", "", "schedule a maintenance event with this code")
	fl.StringVar(&lifecycle, "lifecycle", "", "set the Auto Scaling target lifecycle state")
	fl.StringVar(&cancel, "cancel", "", "cancel the maintenance event with this id")
	fl.StringVar(&complete, "complete", "", "complete the maintenance event with this id")
	fl.BoolVar(&clear, "clear", false, "remove the instance's interruption, recommendation and maintenance events")
	fl.DurationVar(&in, "in", 0, "when the event happens, from now")
	fl.StringVar(&at, "at", "", "when the event happens, an RFC 3339 time")
	fl.DurationVar(&duration, "duration", 0, "length of a maintenance window")
	fl.StringVar(&description, "description", "", "description of a maintenance event")
	fl.StringArrayVar(&filters, "filter", nil, "without an ID: select instances, NAME=VALUE[,VALUE...] (repeatable)")
	fl.Float64Var(&fraction, "fraction", 0, "without an ID: the fraction of matching instances to choose, in (0, 1]")
	fl.Int64Var(&seed, "seed", 0, "with --fraction: the seed of the choice (same seed, same instances)")
	return cmd
}

// printEvents says what the instance's metadata now announces.
func printEvents(cmd *cobra.Command, rec *adminapi.InstanceRecord) {
	w := cmd.OutOrStdout()
	s := rec.Spec
	none := true
	if s.Spot != nil {
		fmt.Fprintf(w, "%s: spot/instance-action %s at %s\n", s.InstanceID, s.Spot.Action, s.Spot.Time)
		none = false
	}
	if s.Rebalance != "" {
		fmt.Fprintf(w, "%s: events/recommendations/rebalance noticed at %s\n", s.InstanceID, s.Rebalance)
		none = false
	}
	for _, e := range s.Events {
		where := "scheduled"
		if e.State == "canceled" || e.State == "completed" {
			where = "history"
		}
		fmt.Fprintf(w, "%s: events/maintenance/%s %s %s from %s to %s (%s)\n", s.InstanceID, where, e.EventID, e.Code, e.NotBefore, e.NotAfter, e.State)
		none = false
	}
	if s.TargetLifecycleState != "" {
		fmt.Fprintf(w, "%s: autoscaling/target-lifecycle-state %s\n", s.InstanceID, s.TargetLifecycleState)
		none = false
	}
	if none {
		fmt.Fprintf(w, "%s: no events\n", s.InstanceID)
	}
	fmt.Fprintf(w, "revision %d\n", rec.Revision)
}
