package dataplane

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the data plane's counters. Labels are bounded: the route is a
// category, never a raw path, and instances are not labels. The per-instance
// IMDSv1 counters (imds_metadata_no_token_total and its rejected twin) are
// the migration recorder's.
type Metrics struct {
	requests *prometheus.CounterVec
	tokens   prometheus.Counter

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
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imds_tokens_issued_total",
			Help: "IMDSv2 session tokens issued.",
		}),
	}
	reg.MustRegister(m.requests, m.tokens)
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
}
