package controlplane

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/registry"
	"github.com/imds/imds/internal/store"
	"github.com/imds/imds/internal/store/boltstore"
)

// quiet drops the handler's log, which a fuzzing run would fill.
func quiet(h *Handler) {
	h.log = slog.New(slog.DiscardHandler)
	h.o.Logger = h.log
}

// checkXML fails unless body is well-formed XML.
func checkXML(t *testing.T, body []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("answer is not well-formed XML: %v\n%s", err, body)
		}
	}
}

// FuzzEC2Query sends signed EC2 Query API calls with arbitrary parameters:
// every answer is well-formed XML, never a 5xx: the action's response
// document, or EC2's error document with a code, a message and a request id.
func FuzzEC2Query(f *testing.F) {
	fx := newEC2Fixture(f, nil)
	quiet(fx.h)
	for _, s := range []string{
		"Action=DescribeInstances&Version=2016-11-15",
		"Action=DescribeInstances&InstanceId.1=i-0123456789abcdef0&Filter.1.Name=tag:Name&Filter.1.Value.1=web",
		"Action=DescribeInstances&Filter.1.Name=metadata-options.http-tokens&Filter.1.Value.1=required&MaxResults=5&NextToken=x",
		"Action=ModifyInstanceMetadataOptions&InstanceId=i-0123456789abcdef0&HttpTokens=required&HttpPutResponseHopLimit=3",
		"Action=ModifyInstanceMetadataOptions&InstanceId=i-00000001&HttpEndpoint=disabled&InstanceMetadataTags=enabled",
		"Action=ModifyInstanceMetadataDefaults&HttpTokens=no-preference&HttpPutResponseHopLimit=-1&HttpTokensEnforced=enabled",
		"Action=GetInstanceMetadataDefaults&DryRun=true",
		"Action=CreateTags&ResourceId.1=i-0123456789abcdef0&Tag.1.Key=a&Tag.1.Value=b",
		"Action=DeleteTags&ResourceId.1=i-0123456789abcdef0&Tag.1.Key=a",
		"Action=RegisterImage&Name=x&ImdsSupport=v2.0",
		"Action=ModifyImageAttribute&ImageId=ami-0123456789abcdef0&ImdsSupport.Value=v2.0",
		"Action=DescribeImageAttribute&ImageId=ami-0123456789abcdef0&Attribute=imdsSupport",
		"Action=DescribeInstances&InstanceId.99999999999999999999=x&InstanceId.0=y",
		"Action=Nope",
		"Action=%zz",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, form string) {
		body := []byte(form)
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", bytes.NewReader(body))
		r.Host = "imds.test:8080"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := adminapi.SignRequest(r, body, testKeyID, testSecret, testRegion, "ec2", fx.now); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%q: status %d\n%s", form, w.Code, w.Body)
		}
		checkXML(t, w.Body.Bytes())
		root, e := ec2Answer(t, w.Body.Bytes())
		if w.Code == http.StatusOK {
			// An answer is the action's response document.
			q, _ := url.ParseQuery(form)
			if want := q.Get("Action") + "Response"; root != want || !bytes.Contains(w.Body.Bytes(), []byte("<requestId>")) {
				t.Fatalf("%q: answer %s without a requestId, want %s\n%s", form, root, want, w.Body)
			}
			return
		}
		// A refusal is EC2's error document, with a code, a message and
		// the request's id.
		if root != "Response" || e.Code == "" || e.Message == "" || e.RequestID == "" {
			t.Fatalf("%q: status %d without an EC2 error code, message and request id\n%s", form, w.Code, w.Body)
		}
	})
}

// ec2ErrorDoc is EC2's error document.
type ec2ErrorDoc struct {
	Code      string `xml:"Errors>Error>Code"`
	Message   string `xml:"Errors>Error>Message"`
	RequestID string `xml:"RequestID"`
}

// ec2Answer returns the name of the root element of an EC2 answer and, for
// an error document, its fields.
func ec2Answer(t *testing.T, body []byte) (string, ec2ErrorDoc) {
	t.Helper()
	var e ec2ErrorDoc
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("answer without a root element: %v\n%s", err, body)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local == "Response" {
				if err := dec.DecodeElement(&e, &se); err != nil {
					t.Fatalf("error document: %v\n%s", err, body)
				}
			}
			return se.Name.Local, e
		}
	}
}

// FuzzSigV4 sends requests whose signature headers are arbitrary. A request
// is accepted only with the original signature, date and body.
func FuzzSigV4(f *testing.F) {
	fx := newEC2Fixture(f, nil)
	quiet(fx.h)
	const form = "Action=GetInstanceMetadataDefaults&Version=2016-11-15"
	orig := fx.signed(http.MethodPost, "/", query("Action", "GetInstanceMetadataDefaults"))
	auth, date := orig.Header.Get("Authorization"), orig.Header.Get("X-Amz-Date")
	origAuth, err := parseAuthorization(auth)
	if err != nil {
		f.Fatal(err)
	}
	if w := fx.serve(fx.signed(http.MethodPost, "/", query("Action", "GetInstanceMetadataDefaults"))); w.Code != http.StatusOK {
		f.Fatalf("the signed request itself: status %d\n%s", w.Code, w.Body)
	}
	f.Add(auth, date, "", form)
	f.Add(strings.ToUpper(auth), date, "", form)
	f.Add(auth, date, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", form)
	f.Add(strings.Replace(auth, "SignedHeaders=", "SignedHeaders=content-type;", 1), date, "", form)
	f.Add("AWS4-HMAC-SHA256 Credential=IMDSTESTOPERATOR0001/20260304/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature="+strings.Repeat("0", 64), "20260304T050607Z", "", "")
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request,SignedHeaders=host,Signature=", "x", "x", "Action=")
	f.Fuzz(func(t *testing.T, authorization, amzDate, contentSHA, body string) {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", strings.NewReader(body))
		r.Host = "imds.test:8080"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		for name, v := range map[string]string{"Authorization": authorization, "X-Amz-Date": amzDate, "X-Amz-Content-Sha256": contentSHA} {
			if v != "" {
				r.Header.Set(name, v)
			}
		}
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d\n%s", w.Code, w.Body)
		}
		checkXML(t, w.Body.Bytes())
		if w.Code != http.StatusOK {
			return
		}
		a, err := parseAuthorization(authorization)
		if err != nil || !strings.EqualFold(a.signature, origAuth.signature) || amzDate != date || body != form {
			t.Fatalf("accepted Authorization %q, X-Amz-Date %q, body %q: not what was signed", authorization, amzDate, body)
		}
	})
}

var adminCodes = map[string]bool{
	adminapi.CodeNotFound: true, adminapi.CodeInvalidParameter: true, adminapi.CodeConflict: true,
	adminapi.CodePreconditionFailed: true, adminapi.CodeMethodNotAllowed: true, adminapi.CodeRequestTooLarge: true,
	adminapi.CodeUnsupportedMediaType: true,
}

// FuzzAdminBody sends arbitrary JSON and YAML bodies to the admin API's
// writes: every answer is JSON, never a 5xx, and a refusal is the admin
// API's error with a code and a message.
func FuzzAdminBody(f *testing.F) {
	st, err := boltstore.Open(filepath.Join(f.TempDir(), "imds.db"), time.Second)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	reg := registry.New(st, func() time.Time { return adminTestNow })
	if _, err := reg.Put(f.Context(), config.Instance{InstanceID: "i-0123456789abcdef0", Addresses: []string{"10.0.0.1"}}, store.Absent, ""); err != nil {
		f.Fatal(err)
	}
	h := New(Options{Registry: reg, Now: func() time.Time { return adminTestNow }})
	quiet(h)
	mux := http.NewServeMux()
	h.adminRoutes(mux)
	targets := []string{
		"PUT /v1/instances/i-0123456789abcdef0",
		"PUT /v1/instances/i-0fedcba9876543210",
		"PUT /v1/instances",
		"PUT /v1/roles/web",
		"PUT /v1/relays/hv1",
		"POST /v1/instances/i-0123456789abcdef0/events",
	}
	for i, body := range []string{
		`{"addresses": ["10.0.0.2"], "tags": {"Name": "a"}, "metadata-options": {"http-tokens": "required", "http-put-response-hop-limit": 2}}`,
		`{"instance-id": "i-0fedcba9876543210", "user-data": "#!/bin/sh", "spot": {"action": "stop", "time": "2026-03-01T12:00:00Z"}}`,
		`{"instances": [{"instance-id": "i-0aaaaaaaaaaaaaaaa", "addresses": ["10.0.0.9"]}, {"instance-id": "i-0bbbbbbbbbbbbbbbb", "addresses": ["10.0.0.9"]}]}`,
		`{"static": {"access-key-id": "AKIAIOSFODNN7EXAMPLE", "secret-access-key": "s"}}`,
		`{"addresses": ["10.1.0.1", "fd00::1"], "secret": "c2VjcmV0c2VjcmV0c2VjcmV0"}`,
		`{"type": "spot", "action": "terminate", "in": "2m"}`,
	} {
		f.Add(uint8(i), false, []byte(body))
	}
	f.Add(uint8(0), true, []byte("addresses: [10.0.0.3]\nmetadata-options:\n  http-tokens: optional\n"))
	f.Add(uint8(2), true, []byte("instances:\n- instance-id: i-0ccccccccccccccccc\n"))
	f.Add(uint8(3), true, []byte("assume-role: {role-arn: 'arn:aws:iam::123456789012:role/x'}\n"))
	f.Add(uint8(1), false, []byte(`{"addresses": 5}`))
	f.Add(uint8(1), false, []byte(`[]`))
	f.Fuzz(func(t *testing.T, target uint8, isYAML bool, body []byte) {
		method, path, _ := strings.Cut(targets[int(target)%len(targets)], " ")
		r := httptest.NewRequestWithContext(t.Context(), method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if isYAML {
			r.Header.Set("Content-Type", "application/yaml")
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: status %d\n%s", method, path, body, w.Code, w.Body)
		}
		if w.Code != http.StatusNoContent && !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: status %d, answer is not JSON\n%s", method, path, body, w.Code, w.Body)
		}
		// A refusal has one of the admin API's codes and says what is wrong.
		if w.Code >= 400 {
			var e adminapi.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !adminCodes[e.Error.Code] || e.Error.Message == "" {
				t.Fatalf("%s %s %q: status %d, not an admin API error\n%s", method, path, body, w.Code, w.Body)
			}
		}
	})
}
