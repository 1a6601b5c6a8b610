package credentials

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// source fetches one credential set.
//
// fetch returns the credentials or a *fetchError; it must give up when ctx
// ends. It is called from several goroutines at once, for different params.
type source interface {
	fetch(ctx context.Context, p params) (*creds, error)
}

// params say whom a credential set is for. Sources put them in session names
// and command arguments.
type params struct {
	Role       string // the role name; "ec2-instance" for identity credentials
	InstanceID string // "" when the instances of the role share the set
	Delivery   string // ec2:RoleDelivery: "1.0" (IMDSv1) or "2.0" (IMDSv2)
}

// expand replaces {role}, {instance-id} and {role-delivery} in s.
func (p params) expand(s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	return strings.NewReplacer("{role}", p.Role, "{instance-id}", p.InstanceID, "{role-delivery}", p.Delivery).Replace(s)
}

// creds is one credential set as a source gives it.
type creds struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	// Expires is when the source says the set stops working; zero when it
	// does not say (static keys).
	Expires time.Time
	// AccountID is the account of the role, for the extended document; ""
	// when the source does not know it.
	AccountID string
}

// check refuses a set no client could use.
func (c *creds) check(now time.Time) error {
	switch {
	case c == nil:
		return &fetchError{kind: kindInvalid, detail: "no credentials"}
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		return &fetchError{kind: kindInvalid, detail: "no access key id or secret access key"}
	case !c.Expires.IsZero() && !c.Expires.After(now.Add(minLifetime)):
		return &fetchError{kind: kindInvalid, detail: fmt.Sprintf("credentials expire at %s, less than %s from now", c.Expires.UTC().Format(time.RFC3339), minLifetime)}
	}
	return nil
}

// errKind sorts failures by what the client is told.
type errKind int

const (
	// kindUnavailable: the source did not answer, or failed.
	kindUnavailable errKind = iota
	// kindDenied: the source answered that the role may not be assumed.
	kindDenied
	// kindInvalid: the source answered something that is not credentials.
	kindInvalid
)

func (k errKind) String() string {
	switch k {
	case kindDenied:
		return "denied"
	case kindInvalid:
		return "invalid"
	}
	return "unavailable"
}

// fetchError is a source failure. Its text is safe to log: sources build it
// from error codes, exit statuses and transport errors, never from credentials
// or from what a process printed.
type fetchError struct {
	kind   errKind
	detail string
}

func (e *fetchError) Error() string { return e.detail }

// asFetchError makes any error a *fetchError.
func asFetchError(err error) *fetchError {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe
	}
	return &fetchError{kind: kindUnavailable, detail: err.Error()}
}
