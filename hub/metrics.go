package hub

import "github.com/prometheus/client_golang/prometheus"

// Metrics records WebSocket sessions and messages. A nil *Metrics records
// nothing.
type Metrics struct {
	connections prometheus.Gauge
	sent        prometheus.Counter
	slowCloses  prometheus.Counter
}

// NewMetrics registers the hub's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "civicbase_realtime_connections",
			Help: "WebSocket connections being served, authenticated or not, from the upgrade request until the connection closes.",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "civicbase_realtime_messages_sent_total",
			Help: "Text messages written to WebSocket connections: events and replies.",
		}),
		slowCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "civicbase_realtime_slow_closes_total",
			Help: "Sessions closed with 4008 because they did not read their messages fast enough.",
		}),
	}
	reg.MustRegister(m.connections, m.sent, m.slowCloses)
	return m
}

func (m *Metrics) addConnections(delta float64) {
	if m != nil {
		m.connections.Add(delta)
	}
}

func (m *Metrics) messageSent() {
	if m != nil {
		m.sent.Inc()
	}
}

func (m *Metrics) slowClosed() {
	if m != nil {
		m.slowCloses.Inc()
	}
}
