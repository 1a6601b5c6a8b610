package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/ec2id"
)

// maxProcessOutput bounds what a credential process may print.
const maxProcessOutput = 64 << 10

// processSource runs a command that prints the JSON of the AWS CLI's
// credential_process, the way Vault agents and in-house brokers plug in.
type processSource struct {
	argv []string // templates, see params.expand
}

func newProcess(p *config.ProcessSource) (*processSource, error) {
	if !strings.Contains(p.Command[0], "{") {
		if _, err := exec.LookPath(p.Command[0]); err != nil {
			return nil, fmt.Errorf("process command: %w", err)
		}
	}
	return &processSource{argv: p.Command}, nil
}

// processOutput is credential_process's JSON, Version 1.
type processOutput struct {
	Version         int
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      string
	AccountID       string `json:"AccountId"`
}

func (s *processSource) fetch(ctx context.Context, p params) (*creds, error) {
	argv := make([]string, len(s.argv))
	for i, a := range s.argv {
		argv[i] = p.expand(a)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &capped{max: maxProcessOutput}
	errOut := &capped{max: 0} // counted, never kept: it may echo secrets
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var stderr string
	if errOut.n > 0 {
		stderr = fmt.Sprintf(" (%d bytes on stderr, not logged)", errOut.n)
	}
	switch {
	case ctx.Err() != nil:
		return nil, &fetchError{kind: kindUnavailable, detail: "process: " + ctx.Err().Error() + stderr}
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, &fetchError{kind: kindUnavailable, detail: "process: " + ee.ProcessState.String() + stderr}
		}
		return nil, &fetchError{kind: kindUnavailable, detail: "process: " + err.Error()}
	case out.over:
		return nil, &fetchError{kind: kindInvalid, detail: fmt.Sprintf("process: more than %d bytes of output", maxProcessOutput)}
	}
	return parseProcessOutput(out.b.Bytes())
}

// parseProcessOutput reads credential_process JSON. Its errors never quote
// the output.
func parseProcessOutput(b []byte) (*creds, error) {
	bad := func(msg string) error { return &fetchError{kind: kindInvalid, detail: "process: output " + msg} }
	var o processOutput
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, bad("is not a credential_process JSON object")
	}
	if o.Version != 1 {
		return nil, bad(fmt.Sprintf("has Version %d, want 1", o.Version))
	}
	if o.AccessKeyID == "" || o.SecretAccessKey == "" {
		return nil, bad("lacks AccessKeyId or SecretAccessKey")
	}
	c := &creds{AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey, SessionToken: o.SessionToken}
	if ec2id.Account.Valid(o.AccountID) {
		c.AccountID = o.AccountID
	}
	if o.Expiration != "" {
		t, err := time.Parse(time.RFC3339, o.Expiration)
		if err != nil {
			return nil, bad(fmt.Sprintf("has Expiration %q, not an RFC 3339 time", o.Expiration))
		}
		c.Expires = t
	}
	return c, nil
}

// capped keeps up to max bytes and counts the rest.
type capped struct {
	b    bytes.Buffer
	max  int
	n    int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.n += len(p)
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	if c.n > c.max {
		c.over = true
	}
	return len(p), nil
}
