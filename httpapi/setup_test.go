package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/store"
)

const testToken = "test-admin-token-0123456789abcdef"

// fakeEvents is an in-memory EventSource. listFunc, when set, replaces the
// default List.
type fakeEvents struct {
	mu       sync.Mutex
	events   []store.Event
	listFunc func(ctx context.Context, after string, limit int) ([]store.Event, error)
	calls    []listCall
	// newestID, when set, is what NewestKnownID returns, as if events up
	// to it had been stored and pruned.
	newestID string
}

type listCall struct {
	after       string
	limit       int
	hasDeadline bool
}

func (f *fakeEvents) List(ctx context.Context, after string, limit int) ([]store.Event, error) {
	f.mu.Lock()
	_, hasDeadline := ctx.Deadline()
	f.calls = append(f.calls, listCall{after: after, limit: limit, hasDeadline: hasDeadline})
	listFunc := f.listFunc
	f.mu.Unlock()
	if listFunc != nil {
		return listFunc(ctx, after, limit)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	var page []store.Event
	for _, e := range f.events {
		if e.ID > after && len(page) < limit {
			page = append(page, e)
		}
	}
	return page, nil
}

func (f *fakeEvents) Exists(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.events, func(e store.Event) bool { return e.ID == id }), nil
}

// GapsAfter returns no gaps; tests of gaps use a real store.
func (f *fakeEvents) GapsAfter(context.Context, string) ([]store.Gap, error) { return nil, nil }

func (f *fakeEvents) lastCall(t *testing.T) listCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	require.NotEmpty(t, f.calls, "List was not called")
	return f.calls[len(f.calls)-1]
}

func (f *fakeEvents) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testBundle struct {
	url    string
	events *fakeEvents
	logs   *syncBuffer
	client *http.Client
}

// setup serves httpapi.New(opts) through NewServer on a loopback httptest
// server. Empty AdminToken and Events fields get testToken and a fresh
// fakeEvents, and the logger writes JSON lines to the bundle's logs.
func setup(t *testing.T, opts httpapi.Options, realtime http.Handler) *testBundle {
	t.Helper()

	bundle := &testBundle{events: &fakeEvents{}, logs: &syncBuffer{}}
	if opts.AdminToken == "" {
		opts.AdminToken = config.Secret(testToken)
	}
	if opts.Events == nil {
		opts.Events = bundle.events
	}
	opts.Logger = slog.New(slog.NewJSONHandler(bundle.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	bundle.url = startServer(t, httpapi.New(opts), realtime)
	bundle.client = &http.Client{Timeout: 10 * time.Second}
	return bundle
}

// startServer runs NewServer's server for app on a loopback port and
// returns its base URL.
func startServer(t *testing.T, app *fiber.App, realtime http.Handler) string {
	t.Helper()
	server := httptest.NewUnstartedServer(nil)
	server.Config = httpapi.NewServer("127.0.0.1:0", app, realtime)
	server.Start()
	t.Cleanup(server.Close)
	return server.URL
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the given Authorization header value (none when
// empty) and reads the whole response.
func (b *testBundle) do(t *testing.T, method, path, authorization string, body io.Reader) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, body)
	require.NoError(t, err)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// get sends an authenticated GET.
func (b *testBundle) get(t *testing.T, path string) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, "Bearer "+testToken, nil)
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

// requireError checks the status, the JSON error shape and the code, and
// returns the decoded error.
func requireError(t *testing.T, resp response, status int, code string) errorDetail {
	t.Helper()
	require.Equal(t, status, resp.status, "body: %s", resp.body)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))

	var envelope map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(resp.body, &envelope), "body: %s", resp.body)
	require.Len(t, envelope, 1, "body: %s", resp.body)

	decoder := json.NewDecoder(bytes.NewReader(envelope["error"]))
	decoder.DisallowUnknownFields()
	var detail errorDetail
	require.NoError(t, decoder.Decode(&detail), "body: %s", resp.body)
	require.Equal(t, code, detail.Code, "body: %s", resp.body)
	require.NotEmpty(t, detail.Message)
	return detail
}

// eventsPage is the decoded body of GET /events.
type eventsPage struct {
	Events  []json.RawMessage `json:"events"`
	Next    string            `json:"next"`
	HasMore bool              `json:"hasMore"`
}

func decodePage(t *testing.T, resp response) eventsPage {
	t.Helper()
	require.Equal(t, http.StatusOK, resp.status, "body: %s", resp.body)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))
	require.True(t, json.Valid(resp.body), "body is not valid JSON: %s", resp.body)

	decoder := json.NewDecoder(bytes.NewReader(resp.body))
	decoder.DisallowUnknownFields()
	var page eventsPage
	require.NoError(t, decoder.Decode(&page))
	require.NotNil(t, page.Events, `"events" is null or missing: %s`, resp.body)
	return page
}

// testEvent returns an event whose payload is a small JSON object naming id.
func testEvent(id string) store.Event {
	return store.Event{ID: id, Event: "data.created", Model: "UserProfile", Payload: []byte(`{"id":"` + id + `","event":"data.created"}`)}
}

// eventID returns a well-formed id that sorts by n.
func eventID(n int) string {
	const digits = "0123456789abcdef"
	id := []byte(strings.Repeat("0", 26))
	for i := len(id) - 1; n > 0; i-- {
		id[i] = digits[n%16]
		n /= 16
	}
	return "evt_" + string(id)
}

func (f *fakeEvents) NewestKnownID(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	newest := f.newestID
	for _, e := range f.events {
		newest = max(newest, e.ID)
	}
	return newest, nil
}
