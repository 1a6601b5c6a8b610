package migration

import (
	"context"
	"testing"

	"github.com/imds/imds/internal/dataplane"
)

// BenchmarkObserve is the recorder's cost on the request path for a caller
// it knows, per request kind, with the coarse clock running as under
// `imds serve`.
//
//	go test -run '^$' -bench Observe -benchmem ./internal/migration/
func BenchmarkObserve(b *testing.B) {
	r := NewRecorder(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	ua := "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.26.8 md/GOOS#linux md/GOARCH#amd64 api/ec2imds#1.16.11"
	for _, tc := range []struct {
		name string
		o    dataplane.Outcome
	}{
		{"v2-get", getV2(addr1, ua, "/latest/meta-data/instance-id")},
		{"v1-get", getV1(addr1, ua, "/latest/meta-data/instance-id")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r.Observe(tc.o)
			b.ReportAllocs()
			for b.Loop() {
				r.Observe(tc.o)
			}
		})
	}
}
