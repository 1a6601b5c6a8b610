package controlplane

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/adminapi"
)

func TestAuthRefusals(t *testing.T) {
	f := newEC2Fixture(t, nil)
	form := query("Action", "DescribeInstances")
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		code   string
	}{
		{"no authorization", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Del("Authorization")
			return r
		}, 401, "MissingAuthenticationToken"},
		{"unknown key", func() *http.Request {
			o := f.operator()
			o.key = "IMDSUNKNOWNKEY000000"
			return f.signedWith(http.MethodPost, "/", form, o)
		}, 401, "AuthFailure"},
		{"wrong secret", func() *http.Request {
			o := f.operator()
			o.secret = "not-the-secret"
			return f.signedWith(http.MethodPost, "/", form, o)
		}, 401, "AuthFailure"},
		{"signature altered", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			a := r.Header.Get("Authorization")
			last := a[len(a)-1]
			repl := byte('0')
			if last == '0' {
				repl = '1'
			}
			r.Header.Set("Authorization", a[:len(a)-1]+string(repl))
			return r
		}, 401, "AuthFailure"},
		{"tampered body", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			tampered := query("Action", "ModifyInstanceMetadataOptions", "InstanceId", "i-00000001", "HttpTokens", "optional").Encode()
			r.Body = io.NopCloser(strings.NewReader(tampered))
			r.ContentLength = int64(len(tampered))
			return r
		}, 401, "AuthFailure"},
		{"tampered query", func() *http.Request {
			r := f.signed(http.MethodGet, "/", form)
			r.URL.RawQuery += "&InstanceId.1=i-00000001"
			return r
		}, 401, "AuthFailure"},
		{"signed header changed", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 401, "AuthFailure"},
		{"other host", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Host = "elsewhere.test:8080"
			return r
		}, 401, "AuthFailure"},
		{"content hash differs from body", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			return r
		}, 401, "AuthFailure"},
		{"expired", func() *http.Request {
			o := f.operator()
			o.at = f.now.Add(-16 * time.Minute)
			return f.signedWith(http.MethodPost, "/", form, o)
		}, 400, "RequestExpired"},
		{"from the future", func() *http.Request {
			o := f.operator()
			o.at = f.now.Add(16 * time.Minute)
			return f.signedWith(http.MethodPost, "/", form, o)
		}, 400, "RequestExpired"},
		{"other service", func() *http.Request {
			o := f.operator()
			o.service = "s3"
			return f.signedWith(http.MethodPost, "/", form, o)
		}, 401, "AuthFailure"},
		{"malformed authorization", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=IMDSTESTOPERATOR0001/20260304/us-east-1/ec2")
			return r
		}, 401, "AuthFailure"},
		{"sigv2", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("Authorization", "AWS IMDSTESTOPERATOR0001:c2lnbmF0dXJl")
			return r
		}, 401, "AuthFailure"},
		{"date outside scope", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("X-Amz-Date", f.now.Add(-time.Minute).Format(amzDateFmt))
			return r
		}, 401, "AuthFailure"},
		{"session token", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("X-Amz-Security-Token", "token")
			return r
		}, 401, "AuthFailure"},
		{"presigned", func() *http.Request {
			r := f.signed(http.MethodGet, "/", form)
			r.Header.Del("Authorization")
			r.URL.RawQuery += "&X-Amz-Signature=00"
			return r
		}, 401, "AuthFailure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.serve(tc.req())
			if w.Code != tc.status || !strings.Contains(w.Body.String(), "<Code>"+tc.code+"</Code>") {
				t.Errorf("got %d\n%s\nwant %d %s", w.Code, w.Body, tc.status, tc.code)
			}
		})
	}
	if logs := f.logs.String(); strings.Contains(logs, testSecret) || strings.Contains(logs, "Signature=") {
		t.Errorf("log carries a secret or a signature:\n%s", logs)
	}
}

func TestAuthAccepts(t *testing.T) {
	f := newEC2Fixture(t, nil)
	form := query("Action", "DescribeInstances", "InstanceId.1", "i-00000001")
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"post", func() *http.Request { return f.signed(http.MethodPost, "/", form) }},
		{"get", func() *http.Request { return f.signed(http.MethodGet, "/", form) }},
		{"imds service, other region", func() *http.Request {
			o := f.operator()
			o.service, o.region = "imds", "eu-west-1"
			return f.signedWith(http.MethodPost, "/", form, o)
		}},
		{"clock skew within 15 minutes", func() *http.Request {
			o := f.operator()
			o.at = f.now.Add(-14 * time.Minute)
			return f.signedWith(http.MethodPost, "/", form, o)
		}},
		{"unsigned headers added", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.Header.Set("User-Agent", "test/1.0")
			r.Header.Set("X-Unsigned", "yes")
			return r
		}},
		{"content hash of the body", func() *http.Request {
			body := []byte(form.Encode())
			r := f.signed(http.MethodPost, "/", form)
			sum := sha256.Sum256(body)
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			if err := adminapi.SignRequest(r, body, testKeyID, testSecret, testRegion, "ec2", f.now); err != nil {
				t.Fatal(err)
			}
			return r
		}},
		{"content-length not signed", func() *http.Request {
			r := f.signed(http.MethodPost, "/", form)
			r.ContentLength = -1 // as a client that streams the body signs it
			body := []byte(form.Encode())
			r.Body = io.NopCloser(bytes.NewReader(body))
			if err := adminapi.SignRequest(r, body, testKeyID, testSecret, testRegion, "ec2", f.now); err != nil {
				t.Fatal(err)
			}
			r.ContentLength = int64(len(body))
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.serve(tc.req())
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "<instanceId>i-00000001</instanceId>") {
				t.Errorf("got %d\n%s", w.Code, w.Body)
			}
		})
	}
}

func TestAuthOperatorInContext(t *testing.T) {
	f := newEC2Fixture(t, nil)
	var got Caller
	h := f.h.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = CallerFrom(r.Context())
		if OperatorFrom(r.Context()) != testKeyID {
			t.Errorf("OperatorFrom = %q, want %q", OperatorFrom(r.Context()), testKeyID)
		}
		body, _ := io.ReadAll(r.Body)
		if string(body) != "Action=X" {
			t.Errorf("body for the next handler: %q, want the request's", body)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), f.signed(http.MethodPost, "/", url.Values{"Action": {"X"}}))
	if want := (Caller{AccessKeyID: testKeyID, Region: testRegion, Service: "ec2"}); got != want {
		t.Errorf("caller %+v, want %+v", got, want)
	}
}

func TestAuthRefusesJSONUnderV1(t *testing.T) {
	f := newEC2Fixture(t, nil)
	r := f.signed(http.MethodGet, "/v1/instances", nil)
	r.Header.Del("Authorization")
	w := f.serve(r)
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, w.Body)
	}
	if w.Code != http.StatusUnauthorized || body.Error.Code != "MissingAuthenticationToken" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %s %+v", w.Code, w.Header().Get("Content-Type"), body)
	}
	o := f.operator()
	o.secret = "wrong"
	w = f.serve(f.signedWith(http.MethodGet, "/v1/instances", nil, o))
	body.Error.Code = ""
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusUnauthorized || body.Error.Code != "AuthFailure" {
		t.Errorf("bad signature: got %d %s", w.Code, w.Body)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store, as every admin answer", got)
	}
	checkGolden(t, "auth-v1-bad-signature", dump(w))
}

func TestAuthBodyLimit(t *testing.T) {
	f := newEC2Fixture(t, nil)
	big := query("Action", "DescribeInstances", "Pad", strings.Repeat("x", MaxBodyBytes))
	w := f.serve(f.signed(http.MethodPost, "/", big))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d, want 413", w.Code)
	}
}

func TestAuthGolden(t *testing.T) {
	f := newEC2Fixture(t, nil)
	r := f.signed(http.MethodPost, "/", query("Action", "DescribeInstances"))
	r.Header.Del("Authorization")
	checkGolden(t, "auth-missing", dump(f.serve(r)))
	o := f.operator()
	o.secret = "wrong"
	checkGolden(t, "auth-bad-signature", dump(f.serve(f.signedWith(http.MethodPost, "/", query("Action", "DescribeInstances"), o))))
	o = f.operator()
	o.at = f.now.Add(-time.Hour)
	checkGolden(t, "auth-expired", dump(f.serve(f.signedWith(http.MethodPost, "/", query("Action", "DescribeInstances"), o))))
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKID/20260304/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + strings.Repeat("a", 64))
	f.Add("AWS4-HMAC-SHA256 Credential=//////, SignedHeaders=;, Signature=")
	f.Add("AWS AKID:sig")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAuthorization(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q refused without a reason", s)
			}
			return
		}
		if a.accessKeyID == "" || a.region == "" || a.service == "" || len(a.signature) != 64 ||
			!slices.IsSorted(a.signedHeaders) || !slices.Contains(a.signedHeaders, "host") {
			t.Fatalf("accepted %q as %+v", s, a)
		}
		// What is accepted, written the way the SDKs write it, reads the same.
		again := fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
			a.accessKeyID, a.date, a.region, a.service, strings.Join(a.signedHeaders, ";"), a.signature)
		b, err := parseAuthorization(again)
		if err != nil {
			t.Fatalf("accepted %q, but not %q: %v", s, again, err)
		}
		if diff := cmp.Diff(a, b, cmp.AllowUnexported(sigV4Auth{})); diff != "" {
			t.Fatalf("accepted %q, read %q differently (-first +second):\n%s", s, again, diff)
		}
	})
}
