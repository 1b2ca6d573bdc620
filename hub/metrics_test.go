package hub_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/hub"
)

// metricValue returns the value of the unlabeled gauge or counter name in
// reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			require.Len(t, f.GetMetric(), 1, name)
			m := f.GetMetric()[0]
			// Only one of the two is set, and the getters return 0 for nil.
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestMetricsFollowSession(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.Metrics = hub.NewMetrics(reg)
	b := setup(t, cfg)
	require.Equal(t, 0.0, metricValue(t, reg, "civicbase_realtime_connections"))

	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("s1", []string{"UserProfile"}, nil)
	require.Equal(t, 1.0, metricValue(t, reg, "civicbase_realtime_connections"))
	b.write(t, b.event("UserProfile", "data.created", `{"name":"a"}`))
	c.readType("create")
	// Replies to authenticate and subscribe, then the event. onSent runs
	// after the write, so the count may trail the client by a moment.
	waitUntil(t, func() bool { return metricValue(t, reg, "civicbase_realtime_messages_sent_total") == 3 })

	require.NoError(t, c.conn.Close())
	waitUntil(t, func() bool { return metricValue(t, reg, "civicbase_realtime_connections") == 0 })
	count, err := testutil.GatherAndCount(reg, "civicbase_realtime_slow_closes_total")
	require.NoError(t, err)
	require.Equal(t, 1, count)
	require.Equal(t, 0.0, metricValue(t, reg, "civicbase_realtime_slow_closes_total"))
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "condition not met within %s", waitTimeout)
		time.Sleep(10 * time.Millisecond)
	}
}
