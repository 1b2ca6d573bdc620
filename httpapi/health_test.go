package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	resp := bundle.do(t, http.MethodGet, "/healthz", "", nil)

	require.Equal(t, http.StatusOK, resp.status)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))
	require.JSONEq(t, `{"status":"ok"}`, string(resp.body))
}

func TestReadyz(t *testing.T) {
	t.Parallel()

	t.Run("AllChecksOK", func(t *testing.T) {
		t.Parallel()
		ready := func(context.Context) []httpapi.Check {
			return []httpapi.Check{{Name: "database", OK: true}, {Name: "replication_slot", OK: true}}
		}
		bundle := setup(t, httpapi.Options{Ready: ready}, nil)

		resp := bundle.do(t, http.MethodGet, "/readyz", "", nil)

		require.Equal(t, http.StatusOK, resp.status)
		require.Equal(t, "application/json", resp.header.Get("Content-Type"))
		require.Equal(t, `{"status":"ready","checks":[{"name":"database","ok":true},{"name":"replication_slot","ok":true}]}`, string(resp.body))
	})

	t.Run("OneCheckFails", func(t *testing.T) {
		t.Parallel()
		ready := func(context.Context) []httpapi.Check {
			return []httpapi.Check{
				{Name: "database", OK: true},
				{Name: "replication_slot", OK: false, Detail: `slot "civicbase_slot" is invalidated`},
			}
		}
		bundle := setup(t, httpapi.Options{Ready: ready}, nil)

		resp := bundle.do(t, http.MethodGet, "/readyz", "", nil)

		require.Equal(t, http.StatusServiceUnavailable, resp.status)
		require.Equal(t, "application/json", resp.header.Get("Content-Type"))
		require.JSONEq(t, `{"status":"unready","checks":[{"name":"database","ok":true},{"name":"replication_slot","ok":false,"detail":"slot \"civicbase_slot\" is invalidated"}]}`, string(resp.body))
	})

	t.Run("NoReadyFunc", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodGet, "/readyz", "", nil)

		require.Equal(t, http.StatusOK, resp.status)
		require.Equal(t, `{"status":"ready","checks":[]}`, string(resp.body))
	})

	t.Run("NilChecks", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{Ready: func(context.Context) []httpapi.Check { return nil }}, nil)

		resp := bundle.do(t, http.MethodGet, "/readyz", "", nil)

		require.Equal(t, `{"status":"ready","checks":[]}`, string(resp.body))
	})

	t.Run("ContextHasDeadline", func(t *testing.T) {
		t.Parallel()
		var deadline time.Time
		ready := func(ctx context.Context) []httpapi.Check {
			deadline, _ = ctx.Deadline()
			return nil
		}
		bundle := setup(t, httpapi.Options{Ready: ready}, nil)

		bundle.do(t, http.MethodGet, "/readyz", "", nil)

		require.False(t, deadline.IsZero())
		require.WithinDuration(t, time.Now().Add(5*time.Second), deadline, 5*time.Second)
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()

	t.Run("ServedWithoutToken", func(t *testing.T) {
		t.Parallel()
		registry := prometheus.NewRegistry()
		counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "civicbase_test_things_total", Help: "Things counted by the test."})
		registry.MustRegister(counter)
		counter.Add(3)
		bundle := setup(t, httpapi.Options{Gatherer: registry}, nil)

		resp := bundle.do(t, http.MethodGet, "/metrics", "", nil)

		require.Equal(t, http.StatusOK, resp.status)
		require.True(t, strings.HasPrefix(resp.header.Get("Content-Type"), "text/plain"), resp.header.Get("Content-Type"))
		require.Contains(t, string(resp.body), "civicbase_test_things_total 3")
	})

	t.Run("NilGathererNoRoute", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodGet, "/metrics", "", nil)

		requireError(t, resp, http.StatusNotFound, "not_found")
	})
}
