package delivery_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/store"
)

// gather returns every gauge and counter value in reg, and the sample count
// of every histogram under its name plus "_count", keyed by metric name and
// label values joined with ",", labels sorted by name.
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
			if m.GetHistogram() != nil {
				out[f.GetName()+"_count"] = float64(m.GetHistogram().GetSampleCount())
				continue
			}
			// Only one of the two is set, and the getters return 0 for nil.
			out[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func TestMetricsFollowDeliveryOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ok := newReceiver(t, nil)
	failing := newReceiver(t, func(received, int, http.Header) int { return 500 })
	goneReceiver := newReceiver(t, func(received, int, http.Header) int { return 410 })
	okHook := b.register(t, ok.URL, "*")
	failingHook := b.register(t, failing.URL, "*")
	goneHook := b.register(t, goneReceiver.URL, "*")
	reg := prometheus.NewRegistry()
	metrics := delivery.NewMetrics(reg)
	queue := delivery.NewQueueCollector(b.pool, delivery.QueueConfig{}, logger())
	reg.MustRegister(queue)
	// refreshed reads the queue and then gathers, because the queue gauges
	// change only when the collector reads the queue.
	refreshed := func() map[string]float64 {
		require.NoError(t, queue.Refresh(context.Background()))
		return gather(t, reg)
	}

	b.write(t, "u1")
	time.Sleep(20 * time.Millisecond)
	waiting := refreshed()
	for _, hook := range []string{okHook, failingHook, goneHook} {
		require.Equal(t, 1.0, waiting["civicbase_delivery_pending,"+hook], hook)
		require.Greater(t, waiting["civicbase_delivery_oldest_pending_seconds,"+hook], 0.0, hook)
	}
	require.Equal(t, 0.0, waiting["civicbase_webhooks_disabled"])

	b.run(t, delivery.Config{Schedule: fastSchedule, Metrics: metrics})
	waitFor(t, 10*time.Second, "failing delivery dead", func() bool {
		d := b.deliveries(t, failingHook)
		return len(d) == 1 && d[0].Status == store.StatusDead
	})
	waitFor(t, 10*time.Second, "endpoint disabled after 410", func() bool {
		return refreshed()["civicbase_webhooks_disabled"] == 1
	})
	waitFor(t, 10*time.Second, "delivered", func() bool {
		d := b.deliveries(t, okHook)
		return len(d) == 1 && d[0].Status == store.StatusDelivered
	})

	got := refreshed()
	require.Equal(t, 1.0, got["civicbase_delivery_attempts_total,success,"+okHook])
	require.Equal(t, float64(len(fastSchedule)), got["civicbase_delivery_attempts_total,retry,"+failingHook])
	require.Equal(t, 1.0, got["civicbase_delivery_attempts_total,dead,"+failingHook])
	require.Equal(t, 1.0, got["civicbase_delivery_attempts_total,retry,"+goneHook])
	require.Equal(t, 1.0, got["civicbase_delivery_latency_seconds_count"])
	require.Equal(t, float64(len(fastSchedule)+3), got["civicbase_delivery_attempt_duration_seconds_count"])
	require.Equal(t, 0.0, got["civicbase_delivery_pending,"+okHook])
	require.Equal(t, 0.0, got["civicbase_delivery_oldest_pending_seconds,"+okHook])
	require.Equal(t, 0.0, got["civicbase_delivery_pending,"+failingHook])
	require.Equal(t, 1.0, got["civicbase_delivery_pending,"+goneHook])
	count, err := testutil.GatherAndCount(reg, "civicbase_delivery_attempts_total")
	require.NoError(t, err)
	require.Equal(t, 4, count)
}
