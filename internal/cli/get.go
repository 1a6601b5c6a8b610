package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imds/imds/internal/imdsclient"
)

func newGetCmd() *cobra.Command {
	var (
		endpoint                             string
		ipv6, noFallback, noToken, recursive bool
		tokenTTL, timeout                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "get [PATH]",
		Short: "Read instance metadata as the AWS SDKs do",
		Long: `Read instance metadata from EC2 or imds as the AWS SDKs do: an IMDSv2
token first, then the read; without a token only where the SDKs fall back
to IMDSv1 (the token request answered 403, 404, 405 or 5xx, or did not
answer). A PATH without a leading slash is under /latest/meta-data/; the
default is /latest/meta-data/ itself.

The endpoint is --endpoint, else AWS_EC2_METADATA_SERVICE_ENDPOINT, else
http://[fd00:ec2::254] with --ipv6 or AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6,
else http://169.254.169.254. AWS_EC2_METADATA_V1_DISABLED=true acts as
--no-fallback. Requests never go through an HTTP proxy.

With -r, PATH is a directory, read with everything under it and printed as
JSON; leaves that hold a JSON object are embedded as JSON. Role credentials
under security-credentials/ are left out unless PATH is inside it.`,
		Example: `  imds get instance-id
  imds get /latest/dynamic/instance-identity/document
  imds get -r /latest/meta-data/
  imds get --endpoint http://127.0.0.1:1338 placement/region`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/latest/meta-data/"
			if len(args) == 1 {
				path = args[0]
				if !strings.HasPrefix(path, "/") {
					path = "/latest/meta-data/" + path
				}
			}
			if noToken && noFallback {
				return &exitError{ExitUsage, errors.New("--no-token and --no-fallback leave no way to read metadata")}
			}
			ep, err := imdsclient.ResolveEndpoint(endpoint, ipv6, os.Getenv)
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			if !noToken && strings.EqualFold(os.Getenv("AWS_EC2_METADATA_V1_DISABLED"), "true") {
				noFallback = true
			}
			c, err := imdsclient.New(imdsclient.Options{
				Endpoint:       ep.URL,
				TokenTTL:       tokenTTL,
				NoFallback:     noFallback,
				NoToken:        noToken,
				ConnectTimeout: timeout,
				AnswerTimeout:  timeout,
				UserAgent:      "imds-get",
			})
			if err != nil {
				return &exitError{ExitUsage, err}
			}
			defer func() {
				if why := c.FellBack(); why != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "imds: read with IMDSv1: the token request failed: %v\n", why)
				}
			}()
			out := cmd.OutOrStdout()
			if recursive {
				tree, err := c.Crawl(cmd.Context(), path)
				if err != nil {
					return err
				}
				b, err := json.MarshalIndent(tree, "", "  ")
				if err != nil {
					return err
				}
				_, err = out.Write(append(b, '\n'))
				return err
			}
			r, err := c.Get(cmd.Context(), path)
			if err != nil {
				return err
			}
			body := r.Body
			// Metadata has no final newline; user data is written as it is.
			if len(body) > 0 && body[len(body)-1] != '\n' && !strings.HasSuffix(path, "/user-data") {
				body = append(body, '\n')
			}
			_, err = out.Write(body)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoint, "endpoint", "", "IMDS base URL, such as http://127.0.0.1:1338 (overrides AWS_EC2_METADATA_SERVICE_ENDPOINT)")
	f.BoolVar(&ipv6, "ipv6", false, "use the IPv6 endpoint http://[fd00:ec2::254]")
	f.BoolVar(&noFallback, "no-fallback", false, "never read without a token (IMDSv1), as AWS_EC2_METADATA_V1_DISABLED=true does")
	f.BoolVar(&noToken, "no-token", false, "read without a token (IMDSv1), as an SDK without IMDSv2 support does")
	f.BoolVarP(&recursive, "recursive", "r", false, "read the directory PATH and everything under it; print JSON")
	f.DurationVar(&tokenTTL, "token-ttl", imdsclient.DefaultTokenTTL, "lifetime to ask for the IMDSv2 token, 1s to 6h")
	f.DurationVar(&timeout, "timeout", imdsclient.DefaultAnswerTimeout, "how long to wait for a connection, and then for each answer")
	return cmd
}
