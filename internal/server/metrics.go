package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// registerMetrics exposes the fleet and store state; the data plane
// registers its own counters.
func (s *Server) registerMetrics() {
	r := s.metrics
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imds_fleet_instances",
			Help: "Instances in the snapshot the data plane serves.",
		}, func() float64 { return float64(s.syncer.Status().Instances) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imds_store_synced",
			Help: "1 when the served snapshot follows the store, 0 while the store is unreachable (the last snapshot is served).",
		}, func() float64 {
			if s.syncer.Status().Synced {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imds_store_last_sync_timestamp_seconds",
			Help: "When the snapshot last changed or was confirmed against the store.",
		}, func() float64 { return float64(s.syncer.Status().LastSync.UnixNano()) / 1e9 }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "imds_fleet_snapshots_total",
			Help: "Snapshots published to the data plane.",
		}, func() float64 { return float64(s.syncer.Status().Snapshots) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "imds_event_steps_total",
			Help: "Timed event steps this replica wrote (a Spot time, a maintenance window's end, the end of a transitional state).",
		}, func() float64 { return float64(s.events.Stats().Written) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "imds_event_step_failures_total",
			Help: "Writes of timed event steps that failed and are retried.",
		}, func() float64 { return float64(s.events.Stats().Failed) }),
		newCredentialsCollector(s),
	)
}

// credentialsCollector reports each role's credentials at scrape time. The
// role is the only label: per-instance figures belong in the admin API.
type credentialsCollector struct {
	s                                   *Server
	sets, fetches, failures, expiry, ok *prometheus.Desc
}

func newCredentialsCollector(s *Server) *credentialsCollector {
	return &credentialsCollector{
		s: s,
		sets: prometheus.NewDesc("imds_credentials_sets",
			"Credential sets of a role by state: serving (unexpired), pending (first fetch running), failing (last fetch failed), expired (answering the error form).",
			[]string{"role", "state"}, nil),
		fetches: prometheus.NewDesc("imds_credentials_fetches_total",
			"Calls to a role's credential source since its source was configured.", []string{"role", "source"}, nil),
		failures: prometheus.NewDesc("imds_credentials_fetch_failures_total",
			"Failed calls to a role's credential source since its source was configured.", []string{"role", "source"}, nil),
		expiry: prometheus.NewDesc("imds_credentials_next_expiry_timestamp_seconds",
			"Earliest expiry of a role's served credentials.", []string{"role"}, nil),
		ok: prometheus.NewDesc("imds_credentials_last_success_timestamp_seconds",
			"Latest successful fetch of a role's credentials.", []string{"role"}, nil),
	}
}

func (c *credentialsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sets, c.fetches, c.failures, c.expiry, c.ok} {
		ch <- d
	}
}

func (c *credentialsCollector) Collect(ch chan<- prometheus.Metric) {
	ts := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, r := range c.s.creds.Status() {
		for state, n := range map[string]int{"serving": r.Serving, "pending": r.Pending, "failing": r.Failing, "expired": r.Expired} {
			ch <- prometheus.MustNewConstMetric(c.sets, prometheus.GaugeValue, float64(n), r.Role, state)
		}
		ch <- prometheus.MustNewConstMetric(c.fetches, prometheus.CounterValue, float64(r.Fetches), r.Role, r.Source)
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(r.Failures), r.Role, r.Source)
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, ts(r.NextExpiry), r.Role)
		ch <- prometheus.MustNewConstMetric(c.ok, prometheus.GaugeValue, ts(r.LastSuccess), r.Role)
	}
}
