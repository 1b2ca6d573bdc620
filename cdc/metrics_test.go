package cdc_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
)

// gather returns the value of every gauge and counter in reg by metric
// name and label values joined with ",", labels sorted by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetValue()
			}
			// Only one of the two is set, and the getters return 0 for nil.
			out[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

// Not parallel: slot lag compares against the server's WAL position, which
// writes to other databases of the test server also move.
func TestSlotLagGrowsWhilePausedAndCatchesUp(t *testing.T) {
	b := setup(t, profilesSchema, "")
	reg := prometheus.NewRegistry()
	reg.MustRegister(cdc.NewSlotCollector(b.pool, b.cfg.Slot, testLogger()))
	b.metrics = cdc.NewMetrics(reg)

	b.stop()
	b.exec(t, `INSERT INTO user_profiles (id, name) SELECT 'a' || g, 'n' FROM generate_series(1, 1000) g`)
	paused := gather(t, reg)
	require.Greater(t, paused["civicbase_slot_lag_bytes"], 0.0)
	require.Equal(t, 0.0, paused["civicbase_slot_active"])
	require.GreaterOrEqual(t, paused["civicbase_slot_retained_wal_bytes"], paused["civicbase_slot_lag_bytes"])
	require.Equal(t, 1.0, paused["civicbase_slot_wal_status,reserved"])
	time.Sleep(300 * time.Millisecond)
	require.GreaterOrEqual(t, gather(t, reg)["civicbase_cdc_stalled_seconds"], 0.3)

	b.start(t)
	b.waitEvents(t, 1000)
	// The reader stores a position before it acknowledges it, and that
	// write is WAL too, so the slot stays behind by about one small write.
	waitFor(t, 20*time.Second, "slot lag under 8 KiB", func() bool {
		return gather(t, reg)["civicbase_slot_lag_bytes"] < 8<<10
	})
	caughtUp := gather(t, reg)
	require.Equal(t, 1.0, caughtUp["civicbase_slot_active"])
	require.Equal(t, 0.0, caughtUp["civicbase_cdc_lag_seconds"])
	require.Greater(t, caughtUp["civicbase_cdc_stored_lsn"], 0.0)
	require.Equal(t, 1000.0, caughtUp["civicbase_cdc_changes_total,insert,public.user_profiles"])
	require.Equal(t, 1000.0, caughtUp["civicbase_cdc_events_total,data.created"])
}

func TestMetricsCountChangesByOperation(t *testing.T) {
	t.Parallel()
	b := setup(t, `
		CREATE TABLE users (id bigint PRIMARY KEY, name text);
		CREATE TABLE projects (id bigint PRIMARY KEY, name text);`, `
tables:
  - name: users
    events:
      - {name: user.created, on: insert}
  - name: projects
`)
	reg := prometheus.NewRegistry()
	b.metrics = cdc.NewMetrics(reg)
	b.stop()
	b.start(t)

	b.exec(t, `INSERT INTO users VALUES (1, 'a'), (2, 'b')`)
	b.exec(t, `UPDATE users SET name = 'c' WHERE id = 1`)
	b.exec(t, `DELETE FROM users WHERE id = 2`)
	b.exec(t, `INSERT INTO projects VALUES (1, 'p')`)
	b.exec(t, `DELETE FROM projects`)
	b.waitEvents(t, 8)

	got := gather(t, reg)
	require.Equal(t, 2.0, got["civicbase_cdc_changes_total,insert,public.users"])
	require.Equal(t, 1.0, got["civicbase_cdc_changes_total,update,public.users"])
	require.Equal(t, 1.0, got["civicbase_cdc_changes_total,delete,public.users"])
	require.Equal(t, 1.0, got["civicbase_cdc_changes_total,insert,public.projects"])
	require.Equal(t, 1.0, got["civicbase_cdc_changes_total,delete,public.projects"])
	require.Equal(t, 3.0, got["civicbase_cdc_events_total,data.created"])
	require.Equal(t, 2.0, got["civicbase_cdc_events_total,user.created"])
	require.Equal(t, 1.0, got["civicbase_cdc_events_total,data.updated"])
	require.Equal(t, 2.0, got["civicbase_cdc_events_total,data.deleted"])
	count, err := testutil.GatherAndCount(reg, "civicbase_cdc_changes_total")
	require.NoError(t, err)
	require.Equal(t, 5, count)
}
