package registry

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imds/imds/internal/imdsopt"

	"github.com/google/go-cmp/cmp"

	"github.com/imds/imds/internal/config"
	"github.com/imds/imds/internal/metadata"
	"github.com/imds/imds/internal/store"
)

// The fixtures are records exactly as imds wrote them before records had a
// schema version.
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func TestInstanceRecordWithoutVersion(t *testing.T) {
	ud := "#!/bin/sh\necho hi\n"
	for _, tc := range []struct {
		file string
		want *Instance
	}{
		{"instance-unversioned-full.json", &Instance{
			Spec: config.Instance{
				InstanceID: "i-0123456789abcdef0", Addresses: []string{"10.0.0.10", "fd00::10"},
				AccountID: "123456789012", AMIID: "ami-0123456789abcdef0", AMILaunchIndex: 2,
				InstanceType: "t3.micro", Architecture: "x86_64", AvailabilityZone: "eu-west-1a", AvailabilityZoneID: "euw1-az1",
				Region: "eu-west-1", LocalIPv4: "10.0.0.10", PublicIPv4: "203.0.113.10", IPv6: "2001:db8::10",
				MAC: "0e:00:00:00:00:01", Hostname: "ip-10-0-0-10.eu-west-1.compute.internal", PublicHostname: "ec2-203-0-113-10.eu-west-1.compute.amazonaws.com",
				ReservationID: "r-0123456789abcdef0", InterfaceID: "eni-0123456789abcdef0", SubnetID: "subnet-0123456789abcdef0",
				SubnetCIDR: "10.0.0.0/24", VPCID: "vpc-0123456789abcdef0", VPCCIDR: "10.0.0.0/16",
				SecurityGroups: []string{"web", "ssh"}, SecurityGroupIDs: []string{"sg-0123456789abcdef0", "sg-0123456789abcdef1"},
				PublicKeys: config.OrderedMap{{Key: "ops", Value: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops"}},
				UserData:   &ud,
				Tags:       config.OrderedMap{{Key: "Name", Value: "web-1"}, {Key: "env", Value: `prod "blue" <a&b>`}},
				IAMRole:    "web-role", InstanceProfile: "web-profile", LifeCycle: "spot", LaunchTime: "2026-01-02T03:04:05Z",
				Spot:      &config.SpotAction{Action: "terminate", Time: "2026-01-02T04:00:00Z"},
				Rebalance: "2026-01-02T03:58:00Z",
				Events: []config.MaintenanceEvent{{Code: "system-reboot", Description: "scheduled reboot", EventID: "instance-event-0123456789abcdef0",
					NotBefore: "2026-01-09T00:00:00Z", NotAfter: "2026-01-09T02:00:00Z", NotBeforeDeadline: "2026-01-30T00:00:00Z", State: "active"}},
				TargetLifecycleState: "InService",
				MetadataOptions:      config.MetadataOptions{HTTPTokens: "required", HTTPPutResponseHopLimit: 2, HTTPEndpoint: "enabled", HTTPProtocolIPv6: "enabled", InstanceMetadataTags: "enabled"},
			},
			Options:     Options{"required", 2, "enabled", "enabled", "enabled"},
			LaunchTime:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			SeedHash:    "5f2b0c0e9a1d4c7e",
			State:       metadata.Stopping,
			StateUntil:  time.Date(2026, 1, 2, 3, 6, 5, 0, time.UTC),
			StateReason: "Client.UserInitiatedShutdown",
			Revision:    7,
		}},
		{"instance-unversioned-minimal.json", &Instance{
			Spec:       config.Instance{InstanceID: "i-0000000000000000a", Addresses: []string{"10.0.0.1"}},
			Options:    Options{"optional", 1, "enabled", "disabled", "disabled"},
			LaunchTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Revision:   7,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			old := readFixture(t, tc.file)
			got, err := DecodeInstance(store.Item{Key: "instances/" + tc.want.Spec.InstanceID, Value: old, Revision: 7})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("read (-want +got):\n%s", diff)
			}
			// Written again, the record has its version and otherwise the
			// same bytes.
			data, err := encodeInstance(got)
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"schema":1,` + string(old[1:]); string(data) != want {
				t.Errorf("written as\n%s\nwant\n%s", data, want)
			}
		})
	}
}

// fill sets every field v holds, at any depth, to a value of its own, so
// that a round trip that drops a field shows it.
func fill(t *testing.T, v reflect.Value, n *int, path string) {
	t.Helper()
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString("v" + strconv.Itoa(*n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n, path)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), n, path+"["+strconv.Itoa(i)+"]")
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, *n, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				t.Fatalf("%s.%s: unexported field; teach fill about %s", path, v.Type().Field(i).Name, v.Type())
			}
			fill(t, v.Field(i), n, path+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("%s: fill does not know %s; teach it, and the stored record", path, v.Type())
	}
}

// Every field of the in-memory instance survives the store: a field added to
// Instance or config.Instance without a place in the stored record fails
// here.
func TestInstanceRecordRoundTrip(t *testing.T) {
	var in Instance
	n := 0
	fill(t, reflect.ValueOf(&in).Elem(), &n, "Instance")
	data, err := encodeInstance(&in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInstance(store.Item{Key: "instances/x", Value: data, Revision: in.Revision})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&in, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !bytes.HasPrefix(data, []byte(`{"schema":1,`)) {
		t.Errorf("record does not start with its version: %.40s", data)
	}
}

// A record of a schema version this code does not know is refused, naming
// the key and the version, and no write replaces it.
func TestInstanceRecordNewerVersion(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	const id = "i-0000000000000000a"
	future := []byte(`{"schema":2,"instance":{"id":"i-0000000000000000a","addresses":["10.0.0.1"]}}`)
	if _, err := r.Store().Put(ctx, PrefixInstances+id, future, store.Absent); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var se *SchemaError
		if !errors.As(err, &se) || se.Key != PrefixInstances+id || se.Version != 2 || se.Known != InstanceSchema {
			t.Errorf("%s: %v, want a SchemaError for version 2 of %s", what, err, PrefixInstances+id)
			return
		}
		if msg := err.Error(); !strings.Contains(msg, "instances/"+id) || !strings.Contains(msg, "version 2") {
			t.Errorf("%s: %q does not name the key and the version", what, msg)
		}
	}
	_, err := r.Instance(ctx, id)
	check("Instance", err)
	_, err = r.Instances(ctx)
	check("Instances", err)
	_, err = r.ModifyOptions(ctx, id, OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("required")})
	check("ModifyOptions", err)
	_, err = r.Put(ctx, config.Instance{InstanceID: id}, store.Any, "")
	check("Put", err)
	check("CreateTags", r.CreateTags(ctx, []string{id}, config.OrderedMap{{Key: "a", Value: "b"}}))
	check("Delete", r.Delete(ctx, id, store.Any))
	it, err := r.Store().Get(ctx, PrefixInstances+id)
	if err != nil || !bytes.Equal(it.Value, future) {
		t.Errorf("the record is now %s, %v; want it as it was", it.Value, err)
	}

	for _, v := range []string{`{"schema":0}`, `{"schema":-1}`} {
		var se *SchemaError
		if _, err := DecodeInstance(store.Item{Key: "instances/x", Value: []byte(v)}); !errors.As(err, &se) {
			t.Errorf("%s: %v, want a SchemaError", v, err)
		}
	}
}

// A record written before versions is rewritten at the current version by
// the next change, keeping what it held.
func TestInstanceRecordUpgradedOnWrite(t *testing.T) {
	r := newRegistry(t)
	ctx := t.Context()
	const id = "i-0000000000000000a"
	old := readFixture(t, "instance-unversioned-minimal.json")
	if _, err := r.Store().Put(ctx, PrefixInstances+id, old, store.Absent); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ModifyOptions(ctx, id, OptionChanges{HTTPTokens: ptr[imdsopt.Tokens]("required")}); err != nil {
		t.Fatal(err)
	}
	it, err := r.Store().Get(ctx, PrefixInstances+id)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema":1,` + strings.Replace(string(old[1:]), `"http-tokens":"optional"`, `"http-tokens":"required"`, 1)
	if string(it.Value) != want {
		t.Errorf("stored\n%s\nwant\n%s", it.Value, want)
	}
}
