package cli

import (
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/server"
)

func newGuardCmd() *cobra.Command {
	var (
		o        server.Options
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Stand in front of EC2's IMDS for the containers and processes of a host",
		Long: `Answer IMDS callers on the listeners and forward to the upstream IMDS
(EC2's, http://169.254.169.254 by default), always with IMDSv2 upstream.

Each caller gets the policy of the first guard.callers entry whose match
holds its address, else guard.default: IMDSv1 upgraded (served through the
guard's token), allowed (forwarded without one) or refused (401); a role of
its own at iam/security-credentials/ in place of the host's (which no caller
gets unless host-credentials is set); denied path prefixes (404). Tokens are
the guard's own, with its own hop limit. Every request is recorded in the
migration view (imds migration, with the process of callers on this host).
SIGHUP applies the configuration file again (a file that does not validate
leaves everything as it is) and reopens the audit log. See docs/guard.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &exitError{ExitUsage, err}
			}
			o.Guard = true
			return runServer(cmd, o, level)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.GuardUpstream, "upstream", "", "the upstream IMDS, an http URL (default guard.upstream, else http://169.254.169.254)")
	f.StringArrayVar(&o.Listen, "listen", nil, "address host:port to answer callers on, repeatable (default "+server.DefaultListen+"; for containers: the bridge address, see docs/guard.md)")
	f.StringVar(&o.AdminListen, "admin-listen", server.DefaultAdminListen, "control-plane address (/v1 admin API with the migration view, /metrics, /readyz); empty disables it")
	f.StringVar(&o.ConfigPath, "config", "", "YAML file with the guard section and the roles it names (default: IMDSv1 upgraded, no credentials for any caller)")
	f.StringVar(&o.DataDir, "data-dir", filepath.Join(defaultDataDir(), "guard"), "directory for the guard's store (token keys, migration records) and the operator credentials")
	f.BoolVar(&o.KeepAlive, "keep-alive", false, "let clients reuse connections for GETs (EC2 closes every connection)")
	f.StringVar(&o.AuditLog, "audit-log", "", "file to append an audit line (JSON) to per credential set handed out and per IMDSv1 request refused; reopened on SIGHUP")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
