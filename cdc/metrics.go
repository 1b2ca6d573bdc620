package cdc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/civicbase/civicbase/store"
)

// Metrics records what the reader captures. A nil *Metrics records nothing.
type Metrics struct {
	changes   *prometheus.CounterVec
	events    *prometheus.CounterVec
	storedLSN prometheus.Gauge
	leader    prometheus.Gauge
	// oldestPending is the commit time, in Unix nanoseconds, of the oldest
	// change received but not yet stored, or 0 when none is pending.
	oldestPending atomic.Int64
}

// NewMetrics registers the reader's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		// Both labels are bounded: tables by the configured watched tables,
		// operations by insert, update, delete and truncate.
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "civicbase_cdc_changes_total",
			Help: "Row changes decoded from the replication stream, by table and operation. A change replayed after a reconnect counts again.",
		}, []string{"table", "operation"}),
		// Event names are bounded by the generic data.* events and the
		// configured semantic events.
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "civicbase_cdc_events_total",
			Help: "Events built from decoded changes, by event name.",
		}, []string{"event"}),
		storedLSN: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "civicbase_cdc_stored_lsn",
			Help: "WAL position up to which every change is stored and reported to the slot as flushed, as a byte offset.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "civicbase_cdc_leader",
			Help: "1 while this instance holds the slot lock and reads the slot, 0 while it stands by.",
		}),
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "civicbase_cdc_lag_seconds",
		Help: "Seconds since the commit of the oldest change received but not yet stored; 0 when nothing is pending.",
	}, m.lagSeconds)
	reg.MustRegister(m.changes, m.events, m.storedLSN, m.leader, lag)
	return m
}

func (m *Metrics) lagSeconds() float64 {
	oldest := m.oldestPending.Load()
	if oldest == 0 {
		return 0
	}
	return max(time.Since(time.Unix(0, oldest)).Seconds(), 0)
}

func (m *Metrics) addChange(table, operation string, events []store.Event) {
	if m == nil {
		return
	}
	m.changes.WithLabelValues(table, operation).Inc()
	for i := range events {
		m.events.WithLabelValues(events[i].Event).Inc()
	}
}

// setOldestPending sets the commit time of the oldest change not yet
// stored; the zero time means none.
func (m *Metrics) setOldestPending(t time.Time) {
	if m == nil {
		return
	}
	if t.IsZero() {
		m.oldestPending.Store(0)
		return
	}
	m.oldestPending.Store(t.UnixNano())
}

func (m *Metrics) setStored(lsn pglogrepl.LSN) {
	if m == nil {
		return
	}
	m.storedLSN.Set(float64(lsn))
}

func (m *Metrics) setLeader(leader bool) {
	if m == nil {
		return
	}
	if leader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// slotQueryTimeout bounds the slot query of one scrape, so a slow database
// delays /metrics by at most this long.
const slotQueryTimeout = 2 * time.Second

// walStatuses are the known values of pg_replication_slots.wal_status.
// Collect emits a series for an unknown value too.
var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

var (
	slotLagDesc = prometheus.NewDesc("civicbase_slot_lag_bytes",
		"Bytes of WAL between the server's current position and the slot's confirmed flush position.", nil, nil)
	slotRetainedDesc = prometheus.NewDesc("civicbase_slot_retained_wal_bytes",
		"Bytes of WAL the slot keeps on the server: the current position minus the slot's restart position.", nil, nil)
	slotSafeDesc = prometheus.NewDesc("civicbase_slot_safe_wal_size_bytes",
		"Bytes of WAL that can still be written before the slot is invalidated; absent when max_slot_wal_keep_size is unlimited.", nil, nil)
	slotActiveDesc = prometheus.NewDesc("civicbase_slot_active",
		"1 when a process streams from the slot, else 0.", nil, nil)
	slotStatusDesc = prometheus.NewDesc("civicbase_slot_wal_status",
		"1 for the slot's current wal_status, 0 for the others.", []string{"status"}, nil)
	stalledDesc = prometheus.NewDesc("civicbase_cdc_stalled_seconds",
		"Seconds since the slot's confirmed flush position last moved while the server's WAL position was ahead of it; 0 when caught up.", nil, nil)
)

// SlotCollector reads the replication slot's state from Postgres on each
// scrape. It emits nothing when the slot does not exist or the query fails.
type SlotCollector struct {
	pool *pgxpool.Pool
	slot string
	log  *slog.Logger

	mu sync.Mutex
	// confirmed is the confirmed flush position seen by the last scrape,
	// and movedAt when a scrape last saw it change.
	confirmed pglogrepl.LSN
	movedAt   time.Time
}

// NewSlotCollector returns a collector for the slot named slot. Register it
// on the same registry as the reader's Metrics.
func NewSlotCollector(pool *pgxpool.Pool, slot string, log *slog.Logger) *SlotCollector {
	return &SlotCollector{pool: pool, slot: slot, log: log}
}

// Describe implements prometheus.Collector.
func (c *SlotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{slotLagDesc, slotRetainedDesc, slotSafeDesc, slotActiveDesc, slotStatusDesc, stalledDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *SlotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), slotQueryTimeout)
	defer cancel()

	var lag, retained, safe *float64
	var active bool
	var status string
	var current, confirmed *string
	// pg_current_wal_lsn() fails on a standby, so there this logs a warning
	// per scrape and emits nothing.
	err := c.pool.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::float8,
			(pg_current_wal_lsn() - restart_lsn)::float8, safe_wal_size::float8, active,
			coalesce(wal_status, ''), pg_current_wal_lsn()::text, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, c.slot).
		Scan(&lag, &retained, &safe, &active, &status, &current, &confirmed)
	if err != nil {
		if !errors.Is(err, pgxNoRows) && c.log != nil {
			c.log.Warn("reading replication slot metrics failed", "slot", c.slot, "err", err)
		}
		return
	}

	if lag != nil {
		ch <- prometheus.MustNewConstMetric(slotLagDesc, prometheus.GaugeValue, *lag)
	}
	if retained != nil {
		ch <- prometheus.MustNewConstMetric(slotRetainedDesc, prometheus.GaugeValue, *retained)
	}
	if safe != nil {
		ch <- prometheus.MustNewConstMetric(slotSafeDesc, prometheus.GaugeValue, *safe)
	}
	ch <- prometheus.MustNewConstMetric(slotActiveDesc, prometheus.GaugeValue, boolValue(active))

	known := false
	for _, s := range walStatuses {
		known = known || s == status
		ch <- prometheus.MustNewConstMetric(slotStatusDesc, prometheus.GaugeValue, boolValue(s == status), s)
	}
	if !known && status != "" {
		ch <- prometheus.MustNewConstMetric(slotStatusDesc, prometheus.GaugeValue, 1, status)
	}
	ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, c.stalled(current, confirmed).Seconds())
}

// stalled returns how long the confirmed position has not moved while the
// server's position was ahead of it. It is measured between scrapes, so it
// starts at the first scrape that reads the position and grows only while
// scrapes happen.
//
// The reader ends a stalled session on its own, measured independently of
// scrapes: see session.watchdog and the stallTimeout setting.
func (c *SlotCollector) stalled(current, confirmed *string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if current == nil || confirmed == nil {
		c.confirmed, c.movedAt = 0, now
		return 0
	}
	cur, err1 := pglogrepl.ParseLSN(*current)
	conf, err2 := pglogrepl.ParseLSN(*confirmed)
	if err1 != nil || err2 != nil {
		return 0
	}
	if conf != c.confirmed || c.movedAt.IsZero() {
		c.confirmed, c.movedAt = conf, now
	}
	if cur <= conf {
		c.movedAt = now
		return 0
	}
	return now.Sub(c.movedAt)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
