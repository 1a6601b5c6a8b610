package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/imds/imds/internal/ec2id"
	"github.com/imds/imds/internal/imdsclient"
)

// instanceFacts is what the primary endpoint says about the instance.
type instanceFacts struct {
	// how is "IMDSv2" or "IMDSv1": how the facts were read; "" when
	// nothing could be read.
	how string

	id string // "" when unknown

	role       string
	roleErr    error
	profileARN string

	creds    *credentialsDoc
	credsErr error

	docRegion, placementRegion, zone string
	regionErrs                       []string

	// date and received are the newest answer's Date header and when it
	// came, for the clock check.
	date, received time.Time
}

// credentialsDoc is IMDS's role credentials document.
type credentialsDoc struct {
	Code, Message, LastUpdated, Type   string
	AccessKeyID                        string `json:"AccessKeyId"`
	SecretAccessKey, Token, Expiration string
	fields                             map[string]bool // the fields present
}

func (f *instanceFacts) idOrPlaceholder() string {
	if f.id != "" {
		return f.id
	}
	return "<instance-id>"
}

func (f *instanceFacts) note(r *imdsclient.Response) {
	if r == nil {
		return
	}
	if d := r.Date(); !d.IsZero() && r.Received.After(f.received) {
		f.date, f.received = d, r.Received
	}
}

// readInstance reads the instance's facts the way the SDKs here would get
// them: with the token if one was issued, else without one if IMDSv1 is
// allowed (even where the environment forbids the SDKs that fallback, so
// that the other checks still have something to examine).
func readInstance(ctx context.Context, r *run) instanceFacts {
	var f instanceFacts
	p := r.primary
	if p.token != nil {
		f.note(p.token.Response)
	}
	f.note(p.v1)
	if id, err := r.o.ReadFile("/sys/devices/virtual/dmi/id/board_asset_tag"); err == nil {
		// EC2 Nitro instances carry their id as the board asset tag.
		if s := strings.TrimSpace(string(id)); ec2id.Instance.Valid(s) {
			f.id = s
		}
	}

	var c *imdsclient.Client
	switch {
	case p.token != nil:
		c, f.how = p.client, "IMDSv2"
	case p.v1 != nil && p.v1.StatusCode == http.StatusOK:
		var err error
		c, err = imdsclient.New(imdsclient.Options{Endpoint: p.url, NoToken: true, Transport: r.o.Transport, UserAgent: "imds-doctor", Now: r.o.Now})
		if err != nil {
			return f
		}
		f.how = "IMDSv1"
	default:
		return f
	}
	get := func(path string) ([]byte, error) {
		resp, err := c.Get(ctx, path)
		f.note(resp)
		if err != nil {
			return nil, err
		}
		return resp.Body, nil
	}

	if b, err := get("/latest/meta-data/instance-id"); err == nil && ec2id.Instance.Valid(string(b)) {
		f.id = string(b)
	}

	if b, err := get("/latest/meta-data/iam/security-credentials/"); err != nil {
		f.roleErr = err
	} else if name, _, _ := strings.Cut(string(b), "\n"); name != "" {
		f.role = strings.TrimSpace(name)
	} else {
		f.roleErr = errors.New("iam/security-credentials/ lists no role")
	}
	if f.role != "" {
		if b, err := get("/latest/meta-data/iam/info"); err == nil {
			var info struct{ InstanceProfileArn string }
			if json.Unmarshal(b, &info) == nil {
				f.profileARN = info.InstanceProfileArn
			}
		}
		if b, err := get("/latest/meta-data/iam/security-credentials/" + f.role); err != nil {
			f.credsErr = err
		} else {
			var d credentialsDoc
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(bytes.TrimSpace(b), &d); err != nil {
				f.credsErr = fmt.Errorf("the credentials document is not JSON: %w", err)
			} else {
				json.Unmarshal(b, &fields)
				d.fields = map[string]bool{}
				for k := range fields {
					d.fields[k] = true
				}
				f.creds = &d
			}
		}
	}

	if b, err := get("/latest/dynamic/instance-identity/document"); err != nil {
		f.regionErrs = append(f.regionErrs, "identity document: "+errText(err))
	} else {
		var doc struct{ Region, AvailabilityZone, InstanceID string }
		if err := json.Unmarshal(b, &doc); err != nil {
			f.regionErrs = append(f.regionErrs, "identity document: not JSON")
		}
		f.docRegion = doc.Region
		if f.zone == "" {
			f.zone = doc.AvailabilityZone
		}
		if f.id == "" && ec2id.Instance.Valid(doc.InstanceID) {
			f.id = doc.InstanceID
		}
	}
	if b, err := get("/latest/meta-data/placement/availability-zone"); err != nil {
		f.regionErrs = append(f.regionErrs, "placement/availability-zone: "+errText(err))
	} else {
		f.zone = string(b)
	}
	if b, err := get("/latest/meta-data/placement/region"); err != nil {
		f.regionErrs = append(f.regionErrs, "placement/region: "+errText(err))
	} else {
		f.placementRegion = string(b)
	}
	return f
}

func errText(err error) string {
	var se *imdsclient.StatusError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %s", se.StatusCode(), http.StatusText(se.StatusCode()))
	}
	return err.Error()
}

// region is the instance's region as the Go SDK finds it (the identity
// document), else as placement/region says.
func (f *instanceFacts) region() string {
	if f.docRegion != "" {
		return f.docRegion
	}
	return f.placementRegion
}

func (r *run) unreadable(id string) Check {
	return Check{ID: id, Status: Skip, Message: "no metadata could be read (see " + r.endpointID() + ", token and imdsv1)"}
}

func (r *run) checkRole() Check {
	f := &r.inst
	if f.how == "" {
		return r.unreadable("role")
	}
	c := Check{ID: "role"}
	if f.roleErr != nil {
		c.Status = Fail
		if statusOf(f.roleErr) == http.StatusNotFound {
			c.Message = "no IAM role: iam/security-credentials/ answers 404 Not Found, so the instance has no instance profile and SDKs find no credentials in IMDS"
			c.Fix = "aws ec2 associate-iam-instance-profile --instance-id " + f.idOrPlaceholder() + " --iam-instance-profile Name=PROFILE (on imds: iam-role on the instance)"
		} else {
			c.Message = "reading iam/security-credentials/: " + errText(f.roleErr)
		}
		return c
	}
	c.Status = Pass
	c.Message = "role " + f.role + " attached"
	c.Data = map[string]any{"role": f.role}
	if f.profileARN != "" {
		c.Message += " (instance profile " + f.profileARN + ")"
		c.Data["instance-profile-arn"] = f.profileARN
	}
	return c
}

// SDK and EC2 timings around credential expiry.
const (
	sdkRefreshWindow = 15 * time.Minute // botocore and the Go SDK refresh this long before expiry
	skewWarn         = time.Minute
	skewFail         = 5 * time.Minute // SigV4 refuses requests signed further off
)

func (r *run) checkCredentials() Check {
	f := &r.inst
	c := Check{ID: "credentials"}
	switch {
	case f.how == "":
		return r.unreadable("credentials")
	case f.role == "":
		c.Status, c.Message = Skip, "no role (see role)"
		return c
	case f.credsErr != nil:
		c.Status, c.Message = Fail, "reading the credentials of role "+f.role+": "+errText(f.credsErr)
		return c
	}
	d := f.creds
	if !strings.EqualFold(d.Code, "Success") {
		c.Status = Fail
		c.Message = fmt.Sprintf("IMDS has no credentials for role %s: Code %q, Message %q", f.role, d.Code, d.Message)
		if d.Code == "AssumeRoleUnauthorizedAccess" {
			c.Fix = "let EC2 assume the role: its trust policy must allow the principal ec2.amazonaws.com (aws iam update-assume-role-policy --role-name " + f.role + " --policy-document file://trust.json)"
		}
		return c
	}
	// botocore wants all four fields present; every SDK needs the keys
	// and the expiry. An empty Token is long-term keys, which imds can
	// serve and EC2 never does.
	var missing []string
	for _, k := range []struct {
		name    string
		present bool
	}{
		{"AccessKeyId", d.AccessKeyID != ""}, {"SecretAccessKey", d.SecretAccessKey != ""},
		{"Token", d.fields["Token"]}, {"Expiration", d.Expiration != ""},
	} {
		if !k.present {
			missing = append(missing, k.name)
		}
	}
	if len(missing) > 0 {
		c.Status, c.Message = Fail, "the credentials of role "+f.role+" lack "+strings.Join(missing, ", ")
		return c
	}
	exp, err := time.Parse(time.RFC3339, d.Expiration)
	if err != nil {
		c.Status, c.Message = Fail, fmt.Sprintf("the credentials of role %s expire at %q, which is not an RFC 3339 time", f.role, d.Expiration)
		return c
	}
	now := r.o.Now()
	left := exp.Sub(now)
	c.Data = map[string]any{"role": f.role, "expiration": d.Expiration, "seconds-left": int(left / time.Second), "read-with": f.how}
	switch {
	case left <= 0:
		c.Status = Fail
		c.Message = fmt.Sprintf("the credentials of role %s expired at %s, %v ago by this host's clock", f.role, d.Expiration, (-left).Round(time.Second))
		if !f.date.IsZero() && exp.After(f.date) {
			c.Message += ", but not by the server's (see clock)"
		}
	case left < sdkRefreshWindow:
		c.Status = Warn
		c.Message = fmt.Sprintf("the credentials of role %s expire in %v (%s): SDKs refresh %v before expiry and EC2 serves new ones at least 5 minutes before, so IMDS should have rotated them", f.role, left.Round(time.Second), d.Expiration, sdkRefreshWindow)
	default:
		c.Status = Pass
		c.Message = fmt.Sprintf("credentials for role %s, valid until %s (%v left), read with %s", f.role, d.Expiration, left.Round(time.Minute), f.how)
		if d.Token == "" {
			c.Message += "; no session token: long-term keys"
		}
	}
	return c
}

func (r *run) checkClock() Check {
	f := &r.inst
	c := Check{ID: "clock"}
	if f.date.IsZero() {
		c.Status, c.Message = Skip, "no answer with a Date header to compare with"
		return c
	}
	// Date has whole seconds, so the skew is known to a second.
	skew := f.received.Sub(f.date).Round(time.Second)
	c.Data = map[string]any{"skew-seconds": int(skew / time.Second), "server-date": f.date.UTC().Format(time.RFC3339)}
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	fix := "synchronise the clock with NTP, e.g. chrony with the Amazon Time Sync Service at 169.254.169.123 (fd00:ec2::123)"
	if r.container.Detected {
		fix += "; a container shares the host's clock: fix it on the host"
	}
	direction := "ahead of"
	if skew < 0 {
		direction = "behind"
	}
	switch {
	case abs >= skewFail:
		c.Status = Fail
		c.Message = fmt.Sprintf("this host's clock is %v %s the IMDS server's Date: AWS refuses requests signed more than 5 minutes off (RequestTimeTooSkewed, Signature expired), and credential expiry is misjudged", abs, direction)
		c.Fix = fix
	case abs >= skewWarn:
		c.Status = Warn
		c.Message = fmt.Sprintf("this host's clock is %v %s the IMDS server's Date; AWS refuses requests signed more than 5 minutes off", abs, direction)
		c.Fix = fix
	default:
		c.Status = Pass
		c.Message = fmt.Sprintf("this host's clock is within %v of the IMDS server's Date", max(abs, time.Second))
	}
	return c
}

// zoneRegion is the region botocore and the AWS CLI derive: the zone name
// without its last letter.
func zoneRegion(zone string) string {
	if len(zone) < 2 {
		return ""
	}
	return zone[:len(zone)-1]
}

func (r *run) checkRegion() Check {
	f := &r.inst
	if f.how == "" {
		return r.unreadable("region")
	}
	c := Check{ID: "region"}
	region := f.region()
	if region == "" && f.zone != "" {
		region = zoneRegion(f.zone)
	}
	if region == "" {
		c.Status = Fail
		c.Message = "IMDS gives no region: " + strings.Join(f.regionErrs, "; ")
		c.Fix = "set the region: export AWS_REGION=REGION AWS_DEFAULT_REGION=REGION"
		return c
	}
	c.Data = map[string]any{"region": region, "availability-zone": f.zone}
	var odd []string
	if f.docRegion != "" && f.placementRegion != "" && f.docRegion != f.placementRegion {
		odd = append(odd, fmt.Sprintf("the identity document says %s but placement/region says %s", f.docRegion, f.placementRegion))
	}
	if zr := zoneRegion(f.zone); f.zone != "" && zr != region {
		odd = append(odd, fmt.Sprintf("botocore and the AWS CLI derive the region %s from the zone %s, not %s (a Local or Wavelength Zone?)", zr, f.zone, region))
	}
	if len(odd) > 0 {
		c.Status = Warn
		c.Message = "region " + region + ", but " + strings.Join(odd, "; ")
		c.Fix = "export AWS_REGION=" + region + " AWS_DEFAULT_REGION=" + region
		return c
	}
	c.Status = Pass
	c.Message = "region " + region
	if f.zone != "" {
		c.Message += ", availability zone " + f.zone
	}
	if f.id != "" {
		c.Message += ", instance " + f.id
	}
	return c
}
