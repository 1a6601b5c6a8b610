package migration

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// OtherInstances is the instance_id label of the series that sum the
// instances past the metrics cap.
const OtherInstances = "_other"

// DefaultMetricsInstances is how many instances get series of their own.
const DefaultMetricsInstances = 500

// Collector exports the recorder's figures. Per-instance series are bounded:
// the maxInstances instances with the most IMDSv1 requests (served or
// refused) get series of their own, and the rest are summed under
// instance_id="_other", so that a sum over the label is the fleet's total.
type Collector struct {
	r            *Recorder
	maxInstances int
	noToken      *prometheus.Desc
	rejected     *prometheus.Desc
	callers      *prometheus.Desc
	dropped      *prometheus.Desc
	auditDropped *prometheus.Desc
}

// NewCollector returns the collector of r's metrics.
func NewCollector(r *Recorder, maxInstances int) *Collector {
	if maxInstances <= 0 {
		maxInstances = DefaultMetricsInstances
	}
	return &Collector{
		r:            r,
		maxInstances: maxInstances,
		noToken: prometheus.NewDesc("imds_metadata_no_token_total",
			"Successful requests without a token (IMDSv1), as EC2's MetadataNoToken, by instance; instances past the cap are summed under instance_id=\"_other\".",
			[]string{"instance_id"}, nil),
		rejected: prometheus.NewDesc("imds_metadata_no_token_rejected_total",
			"Requests without a token refused because the instance requires tokens, as EC2's MetadataNoTokenRejected, by instance; instances past the cap are summed under instance_id=\"_other\".",
			[]string{"instance_id"}, nil),
		callers: prometheus.NewDesc("imds_migration_callers",
			"Callers seen within the migration window, by instance and class (v2, v1, v1-fallback, v1-rejected); instances past the cap are summed under instance_id=\"_other\".",
			[]string{"instance_id", "class"}, nil),
		dropped: prometheus.NewDesc("imds_migration_overflow_requests_total",
			"Requests from callers past the per-instance caps, counted in the instance's overflow record.", nil, nil),
		auditDropped: prometheus.NewDesc("imds_audit_dropped_total",
			"Audit log lines dropped because the writer fell behind.", nil, nil),
	}
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.noToken
	ch <- c.rejected
	ch <- c.callers
	ch <- c.dropped
	ch <- c.auditDropped
}

type instFigures struct {
	id                string
	noToken, rejected uint64
	classes           [4]int
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.r.now()
	byInst := map[string]*instFigures{}
	c.r.insts.Range(func(k, v any) bool {
		in := v.(*inst)
		byInst[in.id] = &instFigures{id: in.id, noToken: in.noToken.Load(), rejected: in.noTokenRejected.Load()}
		return true
	})
	for id, recs := range c.r.collect(false) {
		f := byInst[id]
		if f == nil {
			f = &instFigures{id: id}
			byInst[id] = f
		}
		for i := range recs {
			class, _ := recs[i].classify(now, c.r.cfg.Window)
			f.classes[classRank(class)]++
		}
	}
	all := make([]*instFigures, 0, len(byInst))
	for _, f := range byInst {
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b *instFigures) int {
		if d := cmp.Compare(b.noToken+b.rejected, a.noToken+a.rejected); d != 0 {
			return d
		}
		return cmp.Compare(a.id, b.id)
	})
	other := &instFigures{id: OtherInstances}
	for i, f := range all {
		if i >= c.maxInstances {
			other.noToken += f.noToken
			other.rejected += f.rejected
			for j := range f.classes {
				other.classes[j] += f.classes[j]
			}
			continue
		}
		c.emit(ch, f)
	}
	if len(all) > c.maxInstances {
		c.emit(ch, other)
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.r.dropped.Load()))
	if c.r.audit != nil {
		ch <- prometheus.MustNewConstMetric(c.auditDropped, prometheus.CounterValue, float64(c.r.audit.Dropped()))
	}
}

func (c *Collector) emit(ch chan<- prometheus.Metric, f *instFigures) {
	ch <- prometheus.MustNewConstMetric(c.noToken, prometheus.CounterValue, float64(f.noToken), f.id)
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(f.rejected), f.id)
	for i, class := range Classes {
		ch <- prometheus.MustNewConstMetric(c.callers, prometheus.GaugeValue, float64(f.classes[i]), f.id, string(class))
	}
}
