// Package ec2id holds the forms of EC2's identifiers, one definition each,
// so that the configuration file, the EC2 and admin APIs, the registry and
// the doctor accept the same values and say the same thing when they refuse
// one.
package ec2id

import "regexp"

// Form is the form of one kind of identifier.
type Form struct {
	re *regexp.Regexp
	// What names the form in an error: "not " + What.
	What string
}

// Valid reports whether s has the form.
func (f Form) Valid(s string) bool { return f.re.MatchString(s) }

// The forms. EC2's resource ids are a prefix and 8 or 17 hex digits.
var (
	Instance = Form{regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`), "an instance id (i- and 8 or 17 hex digits)"}
	Image    = Form{regexp.MustCompile(`^ami-[0-9a-f]{8}([0-9a-f]{9})?$`), "an AMI id (ami- and 8 or 17 hex digits)"}
	Account  = Form{regexp.MustCompile(`^[0-9]{12}$`), "an account id (12 digits)"}
	Region   = Form{regexp.MustCompile(`^` + region + `$`), "a region such as us-east-1"}
	Zone     = Form{zoneRe, "an availability zone such as us-east-1a"}
)

const region = `[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+`

var zoneRe = regexp.MustCompile(`^(` + region + `)[a-z]$`)

// RegionOfZone is the region of an availability zone.
func RegionOfZone(zone string) (string, bool) {
	m := zoneRe.FindStringSubmatch(zone)
	if m == nil {
		return "", false
	}
	return m[1], true
}
