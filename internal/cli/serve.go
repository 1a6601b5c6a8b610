package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/server"
)

func newServeCmd() *cobra.Command {
	var (
		o        server.Options
		logLevel string
		binds    []string
		fastPath bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve instance metadata",
		Long: `Serve instance metadata on the data-plane listeners and the control plane.

Without --config, imds serves a built-in demo instance to every caller on
127.0.0.1:1338, so that AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1338
is all an SDK needs. The fleet is kept in the store (--data-dir, or etcd with
--store etcd); --config seeds it. SIGHUP applies the configuration file again
(a file that does not validate leaves everything as it is) and reopens the
audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return &exitError{ExitUsage, err}
			}
			o.Bind = map[string]string{}
			for _, b := range binds {
				id, addr, ok := strings.Cut(b, "=")
				if !ok || id == "" || addr == "" {
					return &exitError{ExitUsage, fmt.Errorf("--bind %q: want INSTANCE_ID=HOST:PORT", b)}
				}
				if prev, dup := o.Bind[id]; dup {
					return &exitError{ExitUsage, fmt.Errorf("--bind %s given twice (%s and %s)", id, prev, addr)}
				}
				o.Bind[id] = addr
			}
			o.NoFastPath = !fastPath
			if o.Store == "etcd" && len(o.Etcd.Endpoints) == 0 {
				return &exitError{ExitUsage, fmt.Errorf("--store etcd needs --etcd-endpoints")}
			}
			return runServer(cmd, o, level)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Listen, "listen", nil, "data-plane address host:port, repeatable (default "+server.DefaultListen+"; on a host: 169.254.169.254:80 and [fd00:ec2::254]:80)")
	f.StringArrayVar(&binds, "bind", nil, "INSTANCE_ID=HOST:PORT: a listener that serves only this instance (a per-VM tap address), repeatable")
	f.StringVar(&o.AdminListen, "admin-listen", server.DefaultAdminListen, "control-plane address (EC2 Query API, /v1 admin API, /metrics); empty disables it")
	f.StringVar(&o.ConfigPath, "config", "", "YAML file of instances and roles to apply to the store (default: a built-in demo instance on an empty store)")
	f.StringVar(&o.DataDir, "data-dir", defaultDataDir(), "directory for the embedded store and the operator credentials")
	f.StringVar(&o.Store, "store", "bolt", "bolt (one file in --data-dir) or etcd")
	f.StringSliceVar(&o.Etcd.Endpoints, "etcd-endpoints", nil, "etcd client URLs, comma-separated")
	f.StringVar(&o.Etcd.Prefix, "etcd-prefix", "", "key prefix in etcd (default /imds/)")
	f.StringVar(&o.Etcd.TLS.CAFile, "etcd-ca-file", "", "CA bundle verifying the etcd members")
	f.StringVar(&o.Etcd.TLS.CertFile, "etcd-cert-file", "", "client certificate for etcd")
	f.StringVar(&o.Etcd.TLS.KeyFile, "etcd-key-file", "", "client key for etcd")
	f.StringVar(&o.Etcd.Username, "etcd-username", "", "etcd user (password from IMDS_ETCD_PASSWORD)")
	f.BoolVar(&o.KeepAlive, "keep-alive", false, "let clients reuse connections for GETs (EC2 closes every connection)")
	f.BoolVar(&fastPath, "fast-path", true, "answer plain HTTP/1.1 requests on imds's own serving path (--fast-path=false: every request through Go's net/http)")
	f.StringVar(&o.AuditLog, "audit-log", "", "file to append an audit line (JSON) to per credential set handed out and per IMDSv1 request refused; reopened on SIGHUP")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.PreRun = func(*cobra.Command, []string) { o.Etcd.Password = os.Getenv("IMDS_ETCD_PASSWORD") }
	return cmd
}

// runServer runs the server of o until the command's context ends, logging
// at level; SIGHUP reloads it. `imds serve` and `imds guard` share it.
func runServer(cmd *cobra.Command, o server.Options, level slog.Level) error {
	o.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	s, err := server.New(cmd.Context(), o)
	var ce *server.ConfigError
	if errors.As(err, &ce) {
		return &exitError{ExitInvalid, err}
	}
	if err != nil {
		return err
	}
	if err := s.Listen(cmd.Context()); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := s.Reload(cmd.Context()); err != nil {
				o.Logger.Error("reload failed; nothing changed", "err", err)
			}
		}
	}()
	return s.Serve(cmd.Context())
}
