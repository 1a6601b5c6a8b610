package dataplane

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's counters. Labels are bounded: the route is a
// category, never a raw path, and instances are not labels.
type Metrics struct {
	requests *prometheus.CounterVec
	// NoToken counts successful IMDSv1 requests (EC2's MetadataNoToken);
	// NoTokenRejected counts IMDSv1 requests refused because tokens are
	// required (MetadataNoTokenRejected).
	noToken, noTokenRejected prometheus.Counter
	tokens                   prometheus.Counter
}

// NewMetrics registers the data plane's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imds_requests_total",
			Help: "Data-plane requests by route category, status code and IMDS version (v1, v2, none).",
		}, []string{"route", "code", "version"}),
		noToken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imds_metadata_no_token_total",
			Help: "Successful requests without a token (IMDSv1), as EC2's MetadataNoToken.",
		}),
		noTokenRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imds_metadata_no_token_rejected_total",
			Help: "Requests without a token refused because the instance requires tokens, as EC2's MetadataNoTokenRejected.",
		}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imds_tokens_issued_total",
			Help: "IMDSv2 session tokens issued.",
		}),
	}
	reg.MustRegister(m.requests, m.noToken, m.noTokenRejected, m.tokens)
	return m
}

// codes caches the label value of each status code.
var codes = func() map[int]string {
	m := map[int]string{}
	for _, c := range []int{200, 301, 400, 401, 403, 404, 405} {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func (m *Metrics) observe(route string, code int, version string) {
	if m == nil {
		return
	}
	c, ok := codes[code]
	if !ok {
		c = strconv.Itoa(code)
	}
	m.requests.WithLabelValues(route, c, version).Inc()
	switch {
	case version == "v1" && code == 200:
		m.noToken.Inc()
	case version == "v1" && code == 401:
		m.noTokenRejected.Inc()
	}
}
