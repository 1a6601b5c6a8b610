package server

import (
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
	)
}
