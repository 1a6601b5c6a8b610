package controlplane

import (
	"testing"
	"time"
)

func FuzzParseEC2Time(f *testing.F) {
	for _, s := range []string{"2026-03-05T03:00:00Z", "2026-03-05T03:00:00.000Z", "2026-03-05T03:00:00+02:00", "2026-03-05T03:00:00", "2026-03-05", "tomorrow", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseEC2Time("NotBefore", s)
		if err != nil {
			if e, ok := err.(*ec2Error); !ok || e.code != "InvalidParameterValue" {
				t.Fatalf("%q: error %v is not InvalidParameterValue", s, err)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q: %v is not in UTC", s, got)
		}
	})
}
