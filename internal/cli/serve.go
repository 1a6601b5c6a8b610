package cli

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/server"
)

func newServeCmd() *cobra.Command {
	var (
		o        server.Options
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve instance metadata",
		Long: `Serve instance metadata on the data-plane listeners.

Without --config, imds serves a built-in demo instance to every caller on
127.0.0.1:1338, so that AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1338
is all an SDK needs. SIGHUP reloads the configuration file; a file that does not
validate leaves the running configuration in place.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &exitError{ExitUsage, err}
			}
			o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			s, err := server.New(o)
			if err != nil {
				return &exitError{ExitInvalid, err}
			}
			if err := s.Listen(cmd.Context()); err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if err := s.Reload(); err != nil {
						o.Logger.Error("reload failed; still serving the previous configuration", "err", err)
					}
				}
			}()
			return s.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Listen, "listen", nil, "data-plane address host:port, repeatable (default "+server.DefaultListen+"; on a host: 169.254.169.254:80 and [fd00:ec2::254]:80)")
	f.StringVar(&o.ConfigPath, "config", "", "YAML file of instances and roles (default: a built-in demo instance)")
	f.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "directory for state: the token key ring")
	f.BoolVar(&o.KeepAlive, "keep-alive", false, "let clients reuse connections for GETs (EC2 closes every connection)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
