package metadata

import "time"

// Versions are the API versions listed at "/" and accepted as path prefixes,
// oldest first; "latest" is always last.
var Versions = []string{
	"1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
	"2008-02-01", "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12",
	"2014-02-25", "2014-11-05", "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02",
	"2018-03-28", "2018-08-17", "2018-09-24", "2019-10-01", "2020-10-27", "2021-01-03",
	"2021-03-23", "2021-07-15", "2022-09-24", "latest",
}

// SignFunc signs an identity document: the bodies of
// dynamic/instance-identity/pkcs7, signature and rsa2048.
type SignFunc func(document []byte) (pkcs7, signature, rsa2048 []byte, err error)

// Sources render what is not fixed at build time. Nil fields leave their
// leaves out.
type Sources struct {
	// Credentials renders iam/security-credentials/ROLE (instances with a role).
	Credentials DynamicFunc
	// ExtendedCredentials renders iam/security-credentials-extended/ROLE.
	ExtendedCredentials DynamicFunc
	// IdentityCredentials renders
	// identity-credentials/ec2/security-credentials/ec2-instance.
	IdentityCredentials DynamicFunc
	// Sign signs the identity document, once, on the first request for a
	// signature: signing is too slow to do for a whole fleet up front.
	Sign SignFunc
}

// Build makes the tree of an instance. now stamps LastUpdated fields and
// Last-Modified. It copies nothing: in must not change afterwards.
func Build(in *Instance, src Sources, now time.Time) *Tree {
	return &Tree{in: in, src: src, LastModified: now}
}
