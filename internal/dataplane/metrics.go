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

	// byLabels holds the counter of every common label set, so that a
	// request costs no label hashing: [route][code][version].
	byLabels [len(routeNames)][len(codeList)][len(versionNames)]prometheus.Counter
}

var (
	routeNames   = [...]string{routeToken, routeMeta, routeDynamic, routeUser, routeOther}
	versionNames = [...]string{"v1", "v2", "none"}
	codeList     = [...]int{0, 200, 301, 400, 401, 403, 404, 405}
)

func indexOf[T comparable](list []T, v T) int {
	for i, x := range list {
		if x == v {
			return i
		}
	}
	return -1
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
	for r, route := range routeNames {
		for c, code := range codeList {
			for v, version := range versionNames {
				m.byLabels[r][c][v] = m.requests.WithLabelValues(route, strconv.Itoa(code), version)
			}
		}
	}
	return m
}

func (m *Metrics) observe(route string, code int, version string) {
	if m == nil {
		return
	}
	r, c, v := indexOf(routeNames[:], route), indexOf(codeList[:], code), indexOf(versionNames[:], version)
	if r >= 0 && c >= 0 && v >= 0 {
		m.byLabels[r][c][v].Inc()
	} else {
		m.requests.WithLabelValues(route, strconv.Itoa(code), version).Inc()
	}
	switch {
	case version == "v1" && code == 200:
		m.noToken.Inc()
	case version == "v1" && code == 401:
		m.noTokenRejected.Inc()
	}
}
