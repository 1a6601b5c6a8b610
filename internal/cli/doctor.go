package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/doctor"
	"github.com/imds/imds/internal/imdsclient"
)

func newDoctorCmd() *cobra.Command {
	var (
		o       doctor.Options
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Diagnose instance metadata from inside an instance or container",
		Long: `Diagnose why an application here gets no instance metadata or credentials,
on EC2 or against imds. Every check prints one line: PASS, WARN, FAIL or
SKIP, what it found and, for a problem, the fix.

  env-disabled     AWS_EC2_METADATA_DISABLED turns IMDS off in the SDKs
  env-endpoint     the endpoint AWS_EC2_METADATA_SERVICE_ENDPOINT(_MODE) selects
  env-proxy        HTTP_PROXY without NO_PROXY naming the IMDS address
  endpoint-ipv4    http://169.254.169.254 answers; disabled (403) or unreachable
  endpoint-ipv6    http://[fd00:ec2::254] likewise
  endpoint         the endpoint in use, when it is neither of those
  token            an IMDSv2 token is issued
  hop-limit        the token answer arrives (http-put-response-hop-limit);
                   whether this runs in a container
  imdsv1           IMDSv1 allowed (http-tokens optional) or not, and what it
                   means for SDKs; AWS_EC2_METADATA_V1_DISABLED
  role             an IAM role is attached
  credentials      its credentials are served, complete and not expired
  clock            this host's clock against the server's Date header
  region           region and availability zone from IMDS
  env-region       AWS_REGION, AWS_DEFAULT_REGION, the profile's region
  env-credentials  static keys, web identity, container credentials or a
                   profile that the SDKs would use before the instance role

To learn whether IMDSv1 is allowed, doctor sends one request without a token;
on EC2 it counts in the MetadataNoToken (or MetadataNoTokenRejected) metric.
Exit status: 0 when no check fails (warnings included), 1 when one does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Endpoint != "" {
				if _, err := imdsclient.ResolveEndpoint(o.Endpoint, false, func(string) string { return "" }); err != nil {
					return &exitError{ExitUsage, err}
				}
			}
			o.ConnectTimeout, o.AnswerTimeout = timeout, timeout
			rep := doctor.Run(cmd.Context(), o)
			write := rep.WriteText
			if asJSON {
				write = rep.WriteJSON
			}
			if err := write(cmd.OutOrStdout()); err != nil {
				return err
			}
			if !rep.OK {
				failed := 0
				for _, c := range rep.Checks {
					if c.Status == doctor.Fail {
						failed++
					}
				}
				return &exitError{ExitFailure, fmt.Errorf("doctor: %d of %d checks failed", failed, len(rep.Checks))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the report as JSON: ok, endpoint, container, and checks with id, status, message, fix and data")
	f.StringVar(&o.Endpoint, "endpoint", "", "probe this IMDS base URL instead of the one the environment selects")
	f.BoolVar(&o.IPv6, "ipv6", false, "probe the IPv6 endpoint http://[fd00:ec2::254] as the one in use")
	f.BoolVar(&o.NoToken, "no-token", false, "probe as an SDK without IMDSv2 support: no token requests")
	f.DurationVar(&timeout, "timeout", imdsclient.DefaultAnswerTimeout, "how long to wait for a connection, and then for each answer; a token answer later than this counts as lost")
	return cmd
}
