package delivery

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PendingCountLimit is the largest pending count read per endpoint. Counting
// reads one index entry per pending delivery, so the limit bounds the work
// of one read of the queue whatever the backlog.
const PendingCountLimit = 100_000

// failureLogInterval is the least time between two warnings about failed
// reads of the queue, so a database outage does not flood the log.
const failureLogInterval = time.Minute

var (
	pendingDesc = prometheus.NewDesc("civicbase_delivery_pending",
		fmt.Sprintf("Deliveries waiting to be sent, by endpoint, counted up to %d: %[1]d means at least that many. ", PendingCountLimit)+
			"Deliveries of disabled endpoints count too. Read in the background, see civicbase_delivery_queue_snapshot_age_seconds.",
		[]string{"webhook_id"}, nil)
	oldestPendingDesc = prometheus.NewDesc("civicbase_delivery_oldest_pending_seconds",
		"Seconds since the commit of the oldest event not yet delivered to the endpoint, or since the delivery was queued when "+
			"its event is not stored; 0 when none waits. The oldest delivery is read in the background, and its age is advanced to the time of the scrape.",
		[]string{"webhook_id"}, nil)
	disabledDesc = prometheus.NewDesc("civicbase_webhooks_disabled",
		"Endpoints that are disabled, by an operator or after failing. Read in the background.", nil, nil)
	snapshotAgeDesc = prometheus.NewDesc("civicbase_delivery_queue_snapshot_age_seconds",
		"Seconds since the start of the last successful read of civicbase_delivery_pending, civicbase_delivery_oldest_pending_seconds "+
			"and civicbase_webhooks_disabled from PostgreSQL. A value above the read interval (webhooks.queueMetricsInterval, default 15 s) "+
			"plus the 5 s read timeout means reads fail, and the service log says why.",
		nil, nil)
)

// QueueConfig configures a QueueCollector. The zero value is usable.
type QueueConfig struct {
	// Interval is the time between two reads of the queue. Default 15s.
	Interval time.Duration
	// Timeout is the statement timeout of one read. Default 5s.
	Timeout time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c QueueConfig) WithDefaults() QueueConfig {
	c.Interval = cmp.Or(c.Interval, 15*time.Second)
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	return c
}

// QueueCollector serves gauges of the delivery queue from the last snapshot
// that Run or Refresh read from Postgres. A scrape never queries the
// database, so it is fast whatever the backlog, and the database does one
// bounded read per interval however often and by how many scrapers it is
// scraped. Before the first successful read it emits nothing.
type QueueCollector struct {
	pool     *pgxpool.Pool
	cfg      QueueConfig
	log      *slog.Logger
	snapshot atomic.Pointer[queueSnapshot]
}

// queueSnapshot is one read of the queue. It is never modified once stored.
type queueSnapshot struct {
	readAt    time.Time
	endpoints []endpointBacklog
	disabled  int
}

type endpointBacklog struct {
	webhookID string
	// pending is at most PendingCountLimit.
	pending int64
	// oldestAge is the age in seconds, at readAt, of the oldest pending
	// delivery, or 0 when pending is 0.
	oldestAge float64
}

// NewQueueCollector returns a collector of the delivery queue in pool's
// database. Start Run to keep its values current. A nil log discards.
func NewQueueCollector(pool *pgxpool.Pool, cfg QueueConfig, log *slog.Logger) *QueueCollector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &QueueCollector{pool: pool, cfg: cfg.WithDefaults(), log: log}
}

// Run reads the queue at once and then every interval until ctx is
// canceled. A failed read keeps the last values and is logged.
func (c *QueueCollector) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	failures := 0
	var warnedAt time.Time
	for {
		err := c.Refresh(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			if failures == 1 || time.Since(warnedAt) >= failureLogInterval {
				c.log.WarnContext(ctx, "reading delivery queue metrics failed; serving the last values", "err", err, "failures", failures)
				warnedAt = time.Now()
			}
		case failures > 0:
			c.log.InfoContext(ctx, "reading delivery queue metrics succeeded again", "failures", failures)
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh reads the queue once and makes the result the values that scrapes
// get. On error the previous values stay.
func (c *QueueCollector) Refresh(ctx context.Context) error {
	// The statement timeout stops the query on the server. The context
	// deadline, a second later, covers a server that does not respond.
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout+time.Second)
	defer cancel()
	snap := &queueSnapshot{readAt: time.Now()}
	err := pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		timeout := strconv.FormatInt(max(c.cfg.Timeout.Milliseconds(), 1), 10)
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`, timeout); err != nil {
			return err
		}
		return readQueue(ctx, tx, snap)
	})
	if err != nil {
		return fmt.Errorf("reading the delivery queue: %w", err)
	}
	c.snapshot.Store(snap)
	return nil
}

// readQueue fills snap with one row per endpoint, so an endpoint that drains
// to 0 shows 0. Both lateral subqueries read the partial index on
// (webhook_id, event_id) of pending deliveries: the count stops after
// PendingCountLimit entries, and the oldest is the first entry. Its age
// falls back to the delivery's creation when its event was pruned or is a
// webhook.test.
func readQueue(ctx context.Context, tx pgx.Tx, snap *queueSnapshot) error {
	rows, err := tx.Query(ctx, `SELECT w.id, w.active, p.n,
			coalesce(extract(epoch FROM now() - o.since)::float8, 0)
		FROM civicbase.webhooks w
		CROSS JOIN LATERAL (SELECT count(*) AS n FROM (SELECT FROM civicbase.deliveries d
			WHERE d.webhook_id = w.id AND d.status = 'pending' LIMIT $1) c) p
		LEFT JOIN LATERAL (SELECT coalesce((SELECT e.commit_time FROM civicbase.events e WHERE e.id = d.event_id), d.created_at) AS since
			FROM civicbase.deliveries d WHERE d.webhook_id = w.id AND d.status = 'pending'
			ORDER BY d.event_id LIMIT 1) o ON true
		ORDER BY w.id`, PendingCountLimit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e endpointBacklog
		var active bool
		if err := rows.Scan(&e.webhookID, &active, &e.pending, &e.oldestAge); err != nil {
			return err
		}
		if !active {
			snap.disabled++
		}
		snap.endpoints = append(snap.endpoints, e)
	}
	return rows.Err()
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestPendingDesc
	ch <- disabledDesc
	ch <- snapshotAgeDesc
}

// Collect implements prometheus.Collector. It reads only the snapshot.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.snapshot.Load()
	if snap == nil {
		return
	}
	// The oldest pending delivery grows older between reads, but counts
	// and which delivery is oldest change only at the next read.
	since := time.Since(snap.readAt).Seconds()
	for _, e := range snap.endpoints {
		age := 0.0
		if e.pending > 0 {
			age = max(e.oldestAge+since, 0)
		}
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(e.pending), e.webhookID)
		ch <- prometheus.MustNewConstMetric(oldestPendingDesc, prometheus.GaugeValue, age, e.webhookID)
	}
	ch <- prometheus.MustNewConstMetric(disabledDesc, prometheus.GaugeValue, float64(snap.disabled))
	ch <- prometheus.MustNewConstMetric(snapshotAgeDesc, prometheus.GaugeValue, since)
}
