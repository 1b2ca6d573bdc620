package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

// fuzzRoute is a route that FuzzRequestBodies sends bodies or query
// strings to, with the body members or query parameters it accepts.
type fuzzRoute struct {
	method, path string
	fields       []string
}

var fuzzRoutes = []fuzzRoute{
	{http.MethodPost, "/webhooks", []string{"url", "events", "secret", "description"}},
	{http.MethodPatch, "/webhooks/{id}", []string{"url", "events", "description", "active"}},
	{http.MethodPost, "/webhooks/{id}/rotate-secret", []string{"secret", "graceSeconds"}},
	{http.MethodPost, "/webhooks/{id}/replay", []string{"after", "since"}},
	{http.MethodGet, "/events?", []string{"after", "limit"}},
	{http.MethodGet, "/webhooks?", []string{"after", "limit"}},
	{http.MethodGet, "/webhooks/{id}/deliveries?", []string{"status", "before", "limit"}},
}

// codesWithoutField are client error codes about the request as a whole,
// which name no single member.
var codesWithoutField = []string{"invalid_json", "empty_update", "conflicting_fields"}

// FuzzRequestBodies sends JSON bodies and query strings to the webhook and
// event routes of a server backed by a real store. Whatever the input, the
// response must not be a 5xx, must be JSON, and a client error must carry
// a code, a message and, when one member is at fault, that member's name.
func FuzzRequestBodies(f *testing.F) {
	seeds := []struct {
		route uint8
		input string
	}{
		{0, `{"url":"` + devURL + `","events":["*"]}`},
		{0, `{"url":"` + devURL + `","events":["User.*","user.signed_up"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","description":"d"}`},
		{0, `{"url":"ftp://x","events":["Nope.created"],"secret":"short","description":"\u0000"}`},
		{0, `{"URL":"` + devURL + `","events":"*"}`},
		{0, `{"url":null}`},
		{0, `[{"url":"x"}]`},
		{0, `{"url":"` + devURL + `","events":[1,{},[]]}`},
		{0, `{"url":"` + devURL + `","events":["*"],"url":"` + devURL + `"}`},
		{0, `{"url":"http://user:pass@127.0.0.1/","events":["*"]}`},
		{0, "{\"url\":\"\xff\xfe\",\"events\":[\"*\"]}"},
		{1, `{"active":false,"description":"` + strings.Repeat("é", 1001) + `"}`},
		{1, `{}`},
		{1, `{"events":[]}`},
		{1, `{"active":"yes"}`},
		{2, `{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","graceSeconds":3600}`},
		{2, `{"graceSeconds":-1}`},
		{2, `{"graceSeconds":1e400}`},
		{2, `{"graceSeconds":9223372036854775808}`},
		{3, `{"after":"evt_00000000016b374800000000000"}`},
		{3, `{"since":"2026-01-02T15:04:05Z"}`},
		{3, `{"since":"2026-13-45T99:99:99Z","after":"evt_"}`},
		{4, `after=evt_00000000016b374800000000000&limit=1000`},
		{4, `limit=0&limit=1`},
		{4, `after=%ff%00&limit=1e3`},
		{5, `limit=101`},
		{6, `status=dead&limit=5`},
		{6, `status=exploded&before=-1`},
	}
	for _, s := range seeds {
		f.Add(s.route, []byte(s.input))
	}
	handler, webhookID := fuzzServer(f)

	f.Fuzz(func(t *testing.T, routeIndex uint8, input []byte) {
		route := fuzzRoutes[int(routeIndex)%len(fuzzRoutes)]
		path := strings.ReplaceAll(route.path, "{id}", webhookID)
		var req *http.Request
		if strings.HasSuffix(path, "?") {
			query := string(input)
			if strings.ContainsAny(query, " #\x00\r\n\t") || !isPrintable(query) {
				return // not a request line a client can send
			}
			req = httptest.NewRequest(route.method, path+query, nil)
		} else {
			req = httptest.NewRequest(route.method, path, bytes.NewReader(input))
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		checkFuzzResponse(t, route, input, rec)
	})
}

// isPrintable reports whether s has only printable ASCII, as a request
// target must.
func isPrintable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkFuzzResponse checks one response of FuzzRequestBodies.
func checkFuzzResponse(t *testing.T, route fuzzRoute, input []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.Bytes()
	if rec.Code >= 500 {
		t.Fatalf("%s %s with %q: status %d: %s", route.method, route.path, input, rec.Code, body)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("%s %s with %q: Content-Type %q: %s", route.method, route.path, input, got, body)
	}
	if !json.Valid(body) {
		t.Fatalf("%s %s with %q: body is not JSON: %q", route.method, route.path, input, body)
	}
	if rec.Code < 400 {
		return
	}
	var envelope struct {
		Error *struct {
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil || envelope.Error == nil {
		t.Fatalf("%s %s with %q: status %d without an error object: %s", route.method, route.path, input, rec.Code, body)
	}
	e := envelope.Error
	if e.Code == "" || e.Message == "" {
		t.Fatalf("%s %s with %q: error without code or message: %s", route.method, route.path, input, body)
	}
	if (rec.Code != http.StatusBadRequest && rec.Code != http.StatusUnprocessableEntity) || slices.Contains(codesWithoutField, e.Code) {
		return
	}
	if e.Code == "unknown_parameter" {
		if !strings.Contains(e.Message, "unknown query parameter") {
			t.Fatalf("%s %s with %q: unknown_parameter without its message: %s", route.method, route.path, input, body)
		}
		return
	}
	if e.Field == nil || (!slices.Contains(route.fields, *e.Field) && e.Code != "unknown_field") {
		t.Fatalf("%s %s with %q: error %s names no accepted member: %s", route.method, route.path, input, e.Code, body)
	}
}

// fuzzDatabaseEnv passes the database of the fuzzing process to its
// workers, which run fuzzServer too and read its environment. So they start
// no cluster of their own, which they could not remove: the coordinator
// kills them when fuzzing ends.
const fuzzDatabaseEnv = "CIVICBASE_FUZZ_DATABASE_URL"

// fuzzServer returns the handler of NewServer for an API on a fresh
// database in development mode, so that webhook URLs are never resolved,
// and the id of one registered webhook.
func fuzzServer(f *testing.F) (http.Handler, string) {
	ctx := context.Background()
	dbURL := os.Getenv(fuzzDatabaseEnv)
	if dbURL == "" {
		dbURL = pgtest.NewDB(f)
		if fuzzing, worker := flag.Lookup("test.fuzz"), flag.Lookup("test.fuzzworker"); fuzzing.Value.String() != "" && worker.Value.String() == "false" {
			f.Setenv(fuzzDatabaseEnv, dbURL)
		}
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	if err := sql.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		f.Fatal(err)
	}
	st := store.New(pool)
	app := httpapi.New(httpapi.Options{
		AdminToken: config.Secret(testToken), Events: st, Webhooks: st,
		Guard:  delivery.Guard{AllowPrivate: true},
		Logger: slog.New(slog.DiscardHandler),
		Catalog: func(context.Context) ([]string, []string, error) {
			return []string{"User", "Project"}, []string{"user.signed_up"}, nil
		},
	})
	handler := httpapi.NewServer("127.0.0.1:0", app, nil).Handler

	req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(`{"url":"`+devURL+`","events":["*"]}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	var hook struct {
		ID string `json:"id"`
	}
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &hook) != nil {
		f.Fatalf("registering a webhook: %d %s", rec.Code, rec.Body)
	}
	return handler, hook.ID
}

// A member whose name is the empty string is still named: field is "",
// not null as for errors about the request as a whole.
func TestUnknownEmptyMemberIsNamed(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())

	resp := bundle.send(t, http.MethodPost, "/webhooks", `{"":"x"}`)

	requireError(t, resp, http.StatusBadRequest, "unknown_field")
	require.Contains(t, string(resp.body), `"field":""`)
}
