package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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

// queueQueryTimeout bounds the queries of one scrape, so a slow database
// delays /metrics by at most this long.
const queueQueryTimeout = 2 * time.Second

var (
	pendingDesc = prometheus.NewDesc("civicbase_delivery_pending",
		"Deliveries waiting to be sent, by endpoint. Deliveries of disabled endpoints count too.", []string{"webhook_id"}, nil)
	oldestPendingDesc = prometheus.NewDesc("civicbase_delivery_oldest_pending_seconds",
		"Seconds since the commit of the oldest event not yet delivered to the endpoint; 0 when none waits.", []string{"webhook_id"}, nil)
	disabledDesc = prometheus.NewDesc("civicbase_webhooks_disabled",
		"Endpoints that are disabled, by an operator or after failing.", nil, nil)
)

// QueueCollector reads the delivery queue from Postgres on each scrape. It
// emits nothing when the query fails.
type QueueCollector struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

// NewQueueCollector returns a collector of the delivery queue in pool's
// database.
func NewQueueCollector(pool *pgxpool.Pool, log *slog.Logger) *QueueCollector {
	return &QueueCollector{pool: pool, log: log}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestPendingDesc
	ch <- disabledDesc
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), queueQueryTimeout)
	defer cancel()
	// Every endpoint gets a series, so one that drains to 0 shows 0. The
	// age falls back to the delivery's creation when its event was pruned.
	rows, err := c.pool.Query(ctx, `SELECT w.id, w.active, coalesce(p.n, 0),
			coalesce(extract(epoch FROM now() - coalesce(
				(SELECT e.commit_time FROM civicbase.events e WHERE e.id = p.oldest_event), p.oldest_created))::float8, 0)
		FROM civicbase.webhooks w
		LEFT JOIN LATERAL (SELECT count(*) AS n, min(d.event_id) AS oldest_event, min(d.created_at) AS oldest_created
			FROM civicbase.deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending') p ON true`)
	if err != nil {
		c.warn(err)
		return
	}
	defer rows.Close()
	disabled := 0
	for rows.Next() {
		var id string
		var active bool
		var pending int64
		var age float64
		if err := rows.Scan(&id, &active, &pending, &age); err != nil {
			c.warn(err)
			return
		}
		if !active {
			disabled++
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending), id)
		ch <- prometheus.MustNewConstMetric(oldestPendingDesc, prometheus.GaugeValue, max(age, 0), id)
	}
	if err := rows.Err(); err != nil {
		c.warn(err)
		return
	}
	ch <- prometheus.MustNewConstMetric(disabledDesc, prometheus.GaugeValue, float64(disabled))
}

func (c *QueueCollector) warn(err error) {
	if c.log != nil {
		c.log.Warn("reading delivery queue metrics failed", "err", err)
	}
}
