package httpapi_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/store"
)

func TestNewServerSettings(t *testing.T) {
	t.Parallel()
	app := httpapi.New(httpapi.Options{Events: &fakeEvents{}})

	server := httpapi.NewServer("127.0.0.1:8080", app, nil)

	require.Equal(t, "127.0.0.1:8080", server.Addr)
	require.Positive(t, server.ReadHeaderTimeout)
	require.Positive(t, server.MaxHeaderBytes)
	require.Positive(t, server.IdleTimeout)
}

func TestNewPanicsWithoutEvents(t *testing.T) {
	t.Parallel()

	require.PanicsWithValue(t, "httpapi: Options.Events is nil", func() {
		httpapi.New(httpapi.Options{})
	})
}

func TestUnknownRoute(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	resp := bundle.do(t, http.MethodGet, "/foo", "", nil)

	detail := requireError(t, resp, http.StatusNotFound, "not_found")
	require.Equal(t, "no route GET /foo; the API serves GET /, GET /app.css, GET /app.js, GET /events, GET /healthz, GET /readyz", detail.Message)
	require.Empty(t, detail.Field)
	require.Equal(t, "nosniff", resp.header.Get("X-Content-Type-Options"))
}

func TestUnknownRouteOddPath(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	resp := bundle.do(t, http.MethodGet, "/%3Cscript%3E%0A"+strings.Repeat("a", 500), "", nil)

	detail := requireError(t, resp, http.StatusNotFound, "not_found")
	require.Contains(t, detail.Message, `no route GET "/%3Cscript%3E%0Aaaa`)
	require.Less(t, len(detail.Message), 300)
	require.NotContains(t, string(resp.body), "<script>")
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	resp := bundle.do(t, http.MethodPost, "/events", "Bearer "+testToken, strings.NewReader(`{}`))

	detail := requireError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
	require.Equal(t, "method POST is not allowed on /events; use GET or HEAD", detail.Message)
	require.Equal(t, "GET, HEAD", resp.header.Get("Allow"))
}

func TestUnknownMethod(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	resp := bundle.do(t, "BREW", "/events", "Bearer "+testToken, nil)

	detail := requireError(t, resp, http.StatusNotImplemented, "not_implemented")
	require.Contains(t, detail.Message, `"BREW"`)
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()

	t.Run("DeclaredLength", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodPost, "/events", "Bearer "+testToken, bytes.NewReader(make([]byte, 1<<20+1)))

		requireError(t, resp, http.StatusRequestEntityTooLarge, "payload_too_large")
	})

	t.Run("Chunked", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		// A plain io.Reader hides the length, so the client sends the body
		// chunked and the server only finds out by reading.
		body := struct{ *bytes.Reader }{bytes.NewReader(make([]byte, 2<<20))}

		resp := bundle.do(t, http.MethodPost, "/events", "Bearer "+testToken, body)

		requireError(t, resp, http.StatusRequestEntityTooLarge, "payload_too_large")
	})

	t.Run("AtLimitPassesThrough", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodPost, "/events", "Bearer "+testToken, bytes.NewReader(make([]byte, 1<<20)))

		requireError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
	})
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)
	bundle.events.newestID = eventID(1)
	bundle.events.listFunc = func(_ context.Context, after string, _ int) ([]store.Event, error) {
		if after == "" {
			panic("test panic in List")
		}
		return nil, nil
	}

	resp := bundle.get(t, "/events")

	requireError(t, resp, http.StatusInternalServerError, "internal_error")
	logs := bundle.logs.String()
	require.Contains(t, logs, "panic serving request")
	require.Contains(t, logs, "test panic in List")

	resp = bundle.get(t, "/events?after="+eventID(1))
	decodePage(t, resp)
}

func TestRealtimeRouting(t *testing.T) {
	t.Parallel()

	t.Run("GoesToRealtimeHandler", func(t *testing.T) {
		t.Parallel()
		realtime := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// melody needs to hijack the connection for the WebSocket upgrade.
			_, hijackable := w.(http.Hijacker)
			if !hijackable {
				http.Error(w, "not hijackable", http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("realtime " + r.URL.Path))
		})
		bundle := setup(t, httpapi.Options{}, realtime)

		resp := bundle.do(t, http.MethodGet, "/v1/realtime", "", nil)
		require.Equal(t, http.StatusOK, resp.status)
		require.Equal(t, "realtime /v1/realtime", string(resp.body))

		resp = bundle.do(t, http.MethodGet, "/v1/realtime/other", "", nil)
		requireError(t, resp, http.StatusNotFound, "not_found")

		resp = bundle.do(t, http.MethodGet, "/healthz", "", nil)
		require.Equal(t, http.StatusOK, resp.status)
	})

	t.Run("NilHandlerNotFound", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodGet, "/v1/realtime", "", nil)

		requireError(t, resp, http.StatusNotFound, "not_found")
	})
}
