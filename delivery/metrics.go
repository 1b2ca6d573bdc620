package delivery

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/civicbase/civicbase/store"
)

// Attempt outcomes, the values of the outcome label.
const (
	outcomeSuccess = "success"
	outcomeRetry   = "retry"
	outcomeDead    = "dead"
)

// Metrics records delivery attempts. A nil *Metrics records nothing.
type Metrics struct {
	attempts *prometheus.CounterVec
	duration prometheus.Histogram
	latency  prometheus.Histogram
}

// NewMetrics registers the dispatcher's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		// webhook_id is bounded by the registered endpoints, which an
		// operator creates; event and delivery ids never become labels.
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "civicbase_delivery_attempts_total",
			Help: "Delivery attempts by endpoint and outcome: success, retry (failed, another attempt is scheduled) or dead (failed, no attempt left).",
		}, []string{"webhook_id", "outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "civicbase_delivery_attempt_duration_seconds",
			Help:    "Duration of one delivery attempt, from sending the request to reading the response.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "civicbase_delivery_latency_seconds",
			Help:    "Seconds from the source commit of an event to a 2xx response from the endpoint, retries included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400},
		}),
	}
	reg.MustRegister(m.attempts, m.duration, m.latency)
	return m
}

// observe records one settled attempt of c.
func (m *Metrics) observe(c store.Claimed, res store.Result) {
	if m == nil {
		return
	}
	outcome := outcomeRetry
	switch res.Status {
	case store.StatusDelivered:
		outcome = outcomeSuccess
	case store.StatusDead:
		outcome = outcomeDead
	}
	m.attempts.WithLabelValues(res.WebhookID, outcome).Inc()
	m.duration.Observe(res.Duration.Seconds())
	if outcome == outcomeSuccess && !c.CommitTime.IsZero() {
		end := res.AttemptedAt.Add(res.Duration)
		m.latency.Observe(max(end.Sub(c.CommitTime).Seconds(), 0))
	}
}
