package credentials

import (
	"context"

	"github.com/imds/imds/internal/config"
)

// staticSource serves fixed keys. Having no expiry of their own, they are
// served as if EC2 rotated them: see staticLifetime.
type staticSource struct{ c creds }

func newStatic(s *config.StaticSource) *staticSource {
	return &staticSource{creds{
		AccessKeyID:     s.AccessKeyID,
		SecretAccessKey: s.SecretAccessKey,
		SessionToken:    s.SessionToken,
		AccountID:       s.AccountID,
	}}
}

func (s *staticSource) fetch(context.Context, params) (*creds, error) {
	c := s.c
	return &c, nil
}
