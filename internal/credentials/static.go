package credentials

import (
	"context"
	"time"

	"github.com/imds/imds/internal/config"
)

// staticSource serves fixed keys. Without an expiration of their own, they
// are served as if EC2 rotated them: see staticLifetime. With one, they are
// served until then, and a renewal after it fails (check).
type staticSource struct{ c creds }

func newStatic(s *config.StaticSource) *staticSource {
	// Validate has checked the expiration's form.
	exp, _ := time.Parse(time.RFC3339, s.Expiration)
	return &staticSource{creds{
		AccessKeyID:     s.AccessKeyID,
		SecretAccessKey: s.SecretAccessKey,
		SessionToken:    s.SessionToken,
		AccountID:       s.AccountID,
		Expires:         exp,
	}}
}

func (s *staticSource) fetch(context.Context, params) (*creds, error) {
	c := s.c
	return &c, nil
}
