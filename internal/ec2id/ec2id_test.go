package ec2id

import "testing"

func TestForms(t *testing.T) {
	for _, tc := range []struct {
		form  Form
		valid []string
		not   []string
	}{
		{Instance, []string{"i-0123abcd", "i-0123456789abcdef0"}, []string{"", "i-0123", "i-0123456789abcdef", "i-0123456789ABCDEF0", "web-1", "i-0123456789abcdef01"}},
		{Image, []string{"ami-0123abcd", "ami-0123456789abcdef0"}, []string{"ami-", "i-0123abcd", "ami-0123456789abcdef"}},
		{Account, []string{"123456789012"}, []string{"12345678901", "1234567890123", "12345678901a"}},
		{Region, []string{"us-east-1", "us-gov-west-1", "cn-north-1", "us-isob-east-1"}, []string{"us-east-1a", "useast1", "US-EAST-1"}},
		{Zone, []string{"us-east-1a", "eu-west-3c"}, []string{"us-east-1", "use1-az1"}},
	} {
		for _, s := range tc.valid {
			if !tc.form.Valid(s) {
				t.Errorf("%q is not %s, want valid", s, tc.form.What)
			}
		}
		for _, s := range tc.not {
			if tc.form.Valid(s) {
				t.Errorf("%q is %s, want invalid", s, tc.form.What)
			}
		}
	}
	if r, ok := RegionOfZone("ap-northeast-1a"); !ok || r != "ap-northeast-1" {
		t.Errorf("RegionOfZone(ap-northeast-1a) = %q, %v", r, ok)
	}
	if _, ok := RegionOfZone("ap-northeast-1"); ok {
		t.Error("RegionOfZone of a region succeeded")
	}
}
