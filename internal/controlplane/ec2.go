package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/ec2id"
	"github.com/imds/imds/internal/imdsopt"
	"github.com/imds/imds/internal/registry"
)

// EC2Namespace is the XML namespace of EC2 API version 2016-11-15.
const EC2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// ec2Error is an EC2 API error: HTTP status, code and message, as EC2
// answers them.
type ec2Error struct {
	status int
	code   string
	msg    string
}

func (e *ec2Error) Error() string { return e.code + ": " + e.msg }

func errMissing(param string) *ec2Error {
	return &ec2Error{http.StatusBadRequest, "MissingParameter", "The request must contain the parameter " + param}
}

func errInvalid(format string, args ...any) *ec2Error {
	return &ec2Error{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf(format, args...)}
}

// errDryRun is EC2's answer to a valid request with DryRun=true.
var errDryRun = &ec2Error{http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."}

// ec2Head is what every EC2 response starts with; the writer fills it.
type ec2Head struct {
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
}

func (h *ec2Head) setHead(requestID string) { h.Xmlns, h.RequestID = EC2Namespace, requestID }

type ec2Response interface{ setHead(requestID string) }

// ec2Call is one request of the Query API.
type ec2Call struct {
	action    string
	form      url.Values
	caller    Caller
	requestID string
}

type ec2Action func(h *Handler, ctx context.Context, c *ec2Call) (ec2Response, error)

// ec2Actions are the actions the Query API serves.
var ec2Actions = map[string]ec2Action{
	"ModifyInstanceMetadataOptions":  (*Handler).modifyInstanceMetadataOptions,
	"DescribeInstances":              (*Handler).describeInstances,
	"ModifyInstanceMetadataDefaults": (*Handler).modifyInstanceMetadataDefaults,
	"GetInstanceMetadataDefaults":    (*Handler).getInstanceMetadataDefaults,
	"CreateTags":                     (*Handler).createTags,
	"DeleteTags":                     (*Handler).deleteTags,
	"RegisterImage":                  (*Handler).registerImage,
	"ModifyImageAttribute":           (*Handler).modifyImageAttribute,
	"DescribeImageAttribute":         (*Handler).describeImageAttribute,
	"DescribeInstanceStatus":         (*Handler).describeInstanceStatus,
	"ModifyInstanceEventStartTime":   (*Handler).modifyInstanceEventStartTime,
	"StopInstances":                  (*Handler).stopInstances,
	"StartInstances":                 (*Handler).startInstances,
	"TerminateInstances":             (*Handler).terminateInstances,
}

// ec2Query serves the EC2 Query API: Action=... and its parameters in a
// form body (POST) or the query string (GET).
func (h *Handler) ec2Query(w http.ResponseWriter, r *http.Request) {
	requestID := newRequestID()
	if err := r.ParseForm(); err != nil {
		writeEC2Error(w, http.StatusBadRequest, "MalformedQueryString", "The query string is malformed.", requestID)
		return
	}
	c := &ec2Call{action: r.Form.Get("Action"), form: r.Form, requestID: requestID}
	c.caller, _ = CallerFrom(r.Context())
	var (
		resp ec2Response
		err  error
	)
	if c.action == "" {
		err = &ec2Error{http.StatusBadRequest, "MissingAction", "The request must contain the parameter Action"}
	} else if act, ok := ec2Actions[c.action]; !ok {
		err = &ec2Error{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", c.action)}
	} else {
		resp, err = act(h, r.Context(), c)
	}
	if err != nil {
		e := h.ec2ErrorFor(c, err)
		writeEC2Error(w, e.status, e.code, e.msg, requestID)
		return
	}
	resp.setHead(requestID)
	body, err := xml.MarshalIndent(resp, "", "    ")
	if err != nil {
		h.log.Error("encode EC2 response", "component", "controlplane", "action", c.action, "err", err)
		writeEC2Error(w, http.StatusInternalServerError, "InternalError", "An internal error has occurred", requestID)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(xml.Header))
	w.Write(body)
	w.Write([]byte("\n"))
}

// ec2ErrorFor is the one place where errors become EC2 error codes.
func (h *Handler) ec2ErrorFor(c *ec2Call, err error) *ec2Error {
	var (
		e   *ec2Error
		nf  *registry.NotFoundError
		inv *registry.InvalidError
	)
	if e := eventsEC2Error(err); e != nil {
		return e
	}
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &nf) && nf.Kind == "instance":
		return errInstanceNotFound(nf.ID)
	case errors.As(err, &nf) && nf.Kind == "image":
		return errImageNotFound(nf.ID)
	case errors.As(err, &nf):
		return errInvalid("%s", err.Error())
	case errors.As(err, &inv):
		return errInvalid("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	case errors.Is(err, registry.ErrConflict):
		return &ec2Error{http.StatusBadRequest, "IncorrectState", err.Error()}
	}
	h.log.Error("EC2 action failed", "component", "controlplane", "action", c.action,
		"operator", c.caller.AccessKeyID, "request_id", c.requestID, "err", err)
	return &ec2Error{http.StatusInternalServerError, "InternalError", "An internal error has occurred"}
}

// writeEC2Error writes EC2's error document, the shape the SDKs parse.
func writeEC2Error(w http.ResponseWriter, status int, code, msg string, requestID ...string) {
	id := newRequestID()
	if len(requestID) > 0 {
		id = requestID[0]
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	w.Write(ec2ErrorDocument(code, msg, id))
}

// ec2ErrorResponse is EC2's error document. Unlike its other answers it has
// no namespace and is written on one line.
type ec2ErrorResponse struct {
	XMLName   xml.Name       `xml:"Response"`
	Errors    []ec2ErrorItem `xml:"Errors>Error"`
	RequestID string         `xml:"RequestID"`
}

type ec2ErrorItem struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// ec2ErrorDocument is the body of an EC2 error: the XML declaration, then the
// document. Character data is escaped as EC2 escapes it: &, < and > only.
// A character XML cannot carry (a control character a caller put in a
// parameter that a message echoes, invalid UTF-8) becomes U+FFFD, so the
// document stays well-formed.
func ec2ErrorDocument(code, msg, requestID string) []byte {
	doc := ec2ErrorResponse{Errors: []ec2ErrorItem{{code, msg}}, RequestID: requestID}
	body, err := xml.Marshal(doc)
	if err != nil {
		// Strings always encode.
		panic("controlplane: encode EC2 error: " + err.Error())
	}
	return append([]byte(xml.Header), ec2Unescape.Replace(string(body))...)
}

// ec2Unescape turns back the character references encoding/xml writes for
// quotes, tab, newline and carriage return, which EC2 writes as they are.
// The error document has no attributes, where a quote would need its
// reference, and a reference a caller sent arrives as "&amp;#34;", which
// this leaves alone.
var ec2Unescape = strings.NewReplacer("&#34;", `"`, "&#39;", "'", "&#x9;", "\t", "&#xA;", "\n", "&#xD;", "\r")

// writeAuthJSON writes the admin API's error answer for a refused request.
func writeAuthJSON(w http.ResponseWriter, status int, code, msg string) {
	writeAdminJSON(w, status, adminapi.ErrorBody{Error: adminapi.ErrorDetail{Code: code, Message: msg}})
}

// newRequestID is a random UUID, as EC2's request ids are.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// --- parameters ---

func errInstanceNotFound(ids ...string) *ec2Error {
	if len(ids) == 1 {
		return &ec2Error{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", ids[0])}
	}
	return &ec2Error{http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance IDs '%s' do not exist", strings.Join(ids, ", "))}
}

func errImageNotFound(id string) *ec2Error {
	return &ec2Error{http.StatusBadRequest, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", id)}
}

func checkInstanceID(id string) error {
	if !ec2id.Instance.Valid(id) {
		return &ec2Error{http.StatusBadRequest, "InvalidInstanceID.Malformed", fmt.Sprintf("Invalid id: %q", id)}
	}
	return nil
}

// instanceIDs returns the parameters InstanceId.N, each a well-formed
// instance id.
func (c *ec2Call) instanceIDs() ([]string, error) {
	ids, err := c.list("InstanceId")
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := checkInstanceID(id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func checkImageID(id string) error {
	if !ec2id.Image.Valid(id) {
		return &ec2Error{http.StatusBadRequest, "InvalidAMIID.Malformed", fmt.Sprintf("Invalid id: %q (expecting \"ami-...\")", id)}
	}
	return nil
}

// str returns a parameter and whether it was given.
func (c *ec2Call) str(name string) (*string, bool) {
	vs, ok := c.form[name]
	if !ok || len(vs) == 0 {
		return nil, false
	}
	return &vs[0], true
}

func (c *ec2Call) required(name string) (string, error) {
	v, ok := c.str(name)
	if !ok || *v == "" {
		return "", errMissing(name)
	}
	return *v, nil
}

func (c *ec2Call) integer(name string) (*int, error) {
	v, ok := c.str(name)
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(*v)
	if err != nil {
		return nil, errInvalid("Value (%s) for parameter %s is invalid. Expecting an integer.", *v, name)
	}
	return &n, nil
}

func (c *ec2Call) boolean(name string) (bool, error) {
	v, ok := c.str(name)
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(*v)
	if err != nil {
		return false, errInvalid("Value (%s) for parameter %s is invalid. Expecting true or false.", *v, name)
	}
	return b, nil
}

// option returns an optional parameter that validate, the Validate of a
// metadata option, accepts.
func option[T ~string](c *ec2Call, name string, validate func(T) error) (*T, error) {
	v, ok := c.str(name)
	if !ok {
		return nil, nil
	}
	t := T(*v)
	if err := validate(t); err != nil {
		return nil, errOptionValue(name, *v, err)
	}
	return &t, nil
}

// hopLimit returns the parameter HttpPutResponseHopLimit, checked by
// validate (imdsopt.HopLimit's Validate or ValidateDefault).
func (c *ec2Call) hopLimit(validate func(imdsopt.HopLimit) error) (*imdsopt.HopLimit, error) {
	const name = "HttpPutResponseHopLimit"
	n, err := c.integer(name)
	if err != nil || n == nil {
		return nil, err
	}
	h := imdsopt.HopLimit(*n)
	if err := validate(h); err != nil {
		return nil, errOptionValue(name, strconv.Itoa(*n), err)
	}
	return &h, nil
}

// errOptionValue is EC2's answer to a value a metadata option does not take:
// err, an *imdsopt.ValueError, says what it takes.
func errOptionValue(param, value string, err error) *ec2Error {
	ve, ok := errors.AsType[*imdsopt.ValueError](err)
	if !ok {
		return errInvalid("Value (%s) for parameter %s is invalid.", value, param)
	}
	var want string
	switch vs := ve.Values(); {
	case vs == nil && ve.NoPreference:
		want = fmt.Sprintf("Expecting a value from %d to %d, or %d for no preference.", ve.Min, ve.Max, imdsopt.NoPreferenceHopLimit)
	case vs == nil:
		want = fmt.Sprintf("Expecting a value from %d to %d.", ve.Min, ve.Max)
	case len(vs) == 1:
		want = fmt.Sprintf("The only value is %s.", vs[0])
	default:
		want = fmt.Sprintf("Expecting one of: %s.", strings.Join(vs, ", "))
	}
	return errInvalid("Value (%s) for parameter %s is invalid. %s", value, param, want)
}

// dryRun answers DryRunOperation when DryRun=true; call it once the request
// has been validated, as EC2 checks a dry run fully.
func (c *ec2Call) dryRun() error {
	dr, err := c.boolean("DryRun")
	if err != nil {
		return err
	}
	if dr {
		return errDryRun
	}
	return nil
}

// indices returns the N of every parameter prefix.N or prefix.N.*, in order.
func (c *ec2Call) indices(prefix string) ([]int, error) {
	var out []int
	for k := range c.form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			return nil, errInvalid("The parameter %s is not a valid list member.", k)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// list returns the values of prefix.1, prefix.2, ...
func (c *ec2Call) list(prefix string) ([]string, error) {
	idx, err := c.indices(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(idx))
	for _, i := range idx {
		v, ok := c.str(fmt.Sprintf("%s.%d", prefix, i))
		if !ok {
			return nil, errInvalid("The parameter %s.%d is not a valid list member.", prefix, i)
		}
		out = append(out, *v)
	}
	return out, nil
}

func (h *Handler) audit(c *ec2Call, attrs ...any) {
	h.log.Info("EC2 "+c.action, append([]any{"component", "controlplane",
		"operator", c.caller.AccessKeyID, "region", c.caller.Region, "request_id", c.requestID}, attrs...)...)
}

// --- ModifyInstanceMetadataOptions ---

type metadataOptionsXML struct {
	State                   string           `xml:"state"`
	HTTPTokens              imdsopt.Tokens   `xml:"httpTokens"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `xml:"httpPutResponseHopLimit"`
	HTTPEndpoint            imdsopt.State    `xml:"httpEndpoint"`
	HTTPProtocolIPv6        imdsopt.State    `xml:"httpProtocolIpv6"`
	InstanceMetadataTags    imdsopt.State    `xml:"instanceMetadataTags"`
}

func optionsXML(o registry.Options, state string) metadataOptionsXML {
	return metadataOptionsXML{
		State:                   state,
		HTTPTokens:              o.HTTPTokens,
		HTTPPutResponseHopLimit: o.HTTPPutResponseHopLimit,
		HTTPEndpoint:            o.HTTPEndpoint,
		HTTPProtocolIPv6:        o.HTTPProtocolIPv6,
		InstanceMetadataTags:    o.InstanceMetadataTags,
	}
}

type modifyInstanceMetadataOptionsResponse struct {
	XMLName xml.Name `xml:"ModifyInstanceMetadataOptionsResponse"`
	ec2Head
	InstanceID string             `xml:"instanceId"`
	Options    metadataOptionsXML `xml:"instanceMetadataOptions"`
}

func (h *Handler) modifyInstanceMetadataOptions(ctx context.Context, c *ec2Call) (ec2Response, error) {
	id, err := c.required("InstanceId")
	if err != nil {
		return nil, err
	}
	if err := checkInstanceID(id); err != nil {
		return nil, err
	}
	var ch registry.OptionChanges
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	ch.HTTPTokens, err = option(c, "HttpTokens", imdsopt.Tokens.Validate)
	add(err)
	ch.HTTPPutResponseHopLimit, err = c.hopLimit(imdsopt.HopLimit.Validate)
	add(err)
	ch.HTTPEndpoint, err = option(c, "HttpEndpoint", imdsopt.State.Validate)
	add(err)
	ch.HTTPProtocolIPv6, err = option(c, "HttpProtocolIpv6", imdsopt.State.Validate)
	add(err)
	ch.InstanceMetadataTags, err = option(c, "InstanceMetadataTags", imdsopt.State.Validate)
	add(err)
	if err := firstEC2Error(errs); err != nil {
		return nil, err
	}
	if _, err := h.o.Registry.Instance(ctx, id); err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	in, err := h.o.Registry.ModifyOptions(ctx, id, ch)
	if err != nil {
		return nil, err
	}
	h.audit(c, "instance", id, "options", in.Options)
	return &modifyInstanceMetadataOptionsResponse{
		InstanceID: id,
		// EC2 answers "pending" while it applies the change; here it is in
		// force for the next request, and DescribeInstances says "applied".
		Options: optionsXML(in.Options, "pending"),
	}, nil
}

func firstEC2Error(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// --- account defaults ---

type returnResponse struct {
	XMLName xml.Name
	ec2Head
	Return bool `xml:"return"`
}

func returnTrue(action string) *returnResponse {
	return &returnResponse{XMLName: xml.Name{Local: action + "Response"}, Return: true}
}

func (h *Handler) modifyInstanceMetadataDefaults(ctx context.Context, c *ec2Call) (ec2Response, error) {
	var ch registry.DefaultChanges
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	ch.HTTPTokens, err = option(c, "HttpTokens", imdsopt.Tokens.ValidateDefault)
	add(err)
	ch.HTTPPutResponseHopLimit, err = c.hopLimit(imdsopt.HopLimit.ValidateDefault)
	add(err)
	ch.HTTPEndpoint, err = option(c, "HttpEndpoint", imdsopt.State.ValidateDefault)
	add(err)
	ch.InstanceMetadataTags, err = option(c, "InstanceMetadataTags", imdsopt.State.ValidateDefault)
	add(err)
	ch.HTTPTokensEnforced, err = option(c, "HttpTokensEnforced", imdsopt.State.ValidateDefault)
	add(err)
	if err := firstEC2Error(errs); err != nil {
		return nil, err
	}
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	d, err := h.o.Registry.ModifyDefaults(ctx, c.caller.Region, ch)
	if err != nil {
		return nil, err
	}
	h.audit(c, "defaults", d)
	return returnTrue(c.action), nil
}

type accountLevelXML struct {
	HTTPTokens              imdsopt.Tokens   `xml:"httpTokens,omitempty"`
	HTTPPutResponseHopLimit imdsopt.HopLimit `xml:"httpPutResponseHopLimit,omitempty"`
	HTTPEndpoint            imdsopt.State    `xml:"httpEndpoint,omitempty"`
	InstanceMetadataTags    imdsopt.State    `xml:"instanceMetadataTags,omitempty"`
	ManagedBy               string           `xml:"managedBy"`
	HTTPTokensEnforced      imdsopt.State    `xml:"httpTokensEnforced,omitempty"`
}

type getInstanceMetadataDefaultsResponse struct {
	XMLName xml.Name `xml:"GetInstanceMetadataDefaultsResponse"`
	ec2Head
	AccountLevel accountLevelXML `xml:"accountLevel"`
}

func (h *Handler) getInstanceMetadataDefaults(ctx context.Context, c *ec2Call) (ec2Response, error) {
	if err := c.dryRun(); err != nil {
		return nil, err
	}
	d, err := h.o.Registry.Defaults(ctx, c.caller.Region)
	if err != nil {
		return nil, err
	}
	return &getInstanceMetadataDefaultsResponse{AccountLevel: accountLevelXML{
		HTTPTokens:              d.HTTPTokens,
		HTTPPutResponseHopLimit: d.HTTPPutResponseHopLimit,
		HTTPEndpoint:            d.HTTPEndpoint,
		InstanceMetadataTags:    d.InstanceMetadataTags,
		ManagedBy:               "account",
		HTTPTokensEnforced:      d.HTTPTokensEnforced,
	}}, nil
}
