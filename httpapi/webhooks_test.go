package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

// devURL is a webhook URL that only development mode accepts. No test
// starts a dispatcher, so nothing ever connects to it.
const devURL = "http://127.0.0.1:9/x"

type webhookBundle struct {
	*testBundle
	store *store.Store
	pool  *pgxpool.Pool
}

// setupWebhooks serves the API with a real store on a fresh database. A
// nil opts.Catalog is replaced by one that watches User and Project and
// declares the semantic event user.signed_up.
func setupWebhooks(t *testing.T, opts httpapi.Options) *webhookBundle {
	t.Helper()
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, pgtest.NewDB(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, sql.Migrate(ctx, pool, slog.New(slog.DiscardHandler)))

	st := store.New(pool)
	opts.Webhooks = st
	if opts.Catalog == nil {
		opts.Catalog = func(context.Context) ([]string, []string, error) {
			return []string{"User", "Project"}, []string{"user.signed_up"}, nil
		}
	}
	return &webhookBundle{testBundle: setup(t, opts, nil), store: st, pool: pool}
}

// devOptions are Options for development mode, where devURL is accepted.
func devOptions() httpapi.Options {
	return httpapi.Options{Guard: delivery.Guard{AllowPrivate: true}}
}

// send sends an authenticated request with a body ("" for none).
func (b *webhookBundle) send(t *testing.T, method, path, body string) response {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	return b.do(t, method, path, "Bearer "+testToken, reader)
}

// webhookJSON is a webhook as the API returns it.
type webhookJSON struct {
	ID                string     `json:"id"`
	URL               string     `json:"url"`
	Events            []string   `json:"events"`
	Description       string     `json:"description"`
	Active            bool       `json:"active"`
	DisabledReason    *string    `json:"disabledReason"`
	FailingSince      *time.Time `json:"failingSince"`
	CreatedAt         time.Time  `json:"createdAt"`
	UpdatedAt         time.Time  `json:"updatedAt"`
	RotationExpiresAt *time.Time `json:"rotationExpiresAt"`
	Secret            *string    `json:"secret"`
}

// decodeStrict decodes a JSON response of the given status into out,
// rejecting members that out does not declare.
func decodeStrict(t *testing.T, resp response, status int, out any) {
	t.Helper()
	require.Equal(t, status, resp.status, "body: %s", resp.body)
	require.Equal(t, "application/json", resp.header.Get("Content-Type"))
	require.Equal(t, "no-store", resp.header.Get("Cache-Control"))
	decoder := json.NewDecoder(bytes.NewReader(resp.body))
	decoder.DisallowUnknownFields()
	require.NoError(t, decoder.Decode(out), "body: %s", resp.body)
}

// create registers a webhook and returns the 201 response.
func (b *webhookBundle) create(t *testing.T, body string) webhookJSON {
	t.Helper()
	resp := b.send(t, http.MethodPost, "/webhooks", body)
	var hook webhookJSON
	decodeStrict(t, resp, http.StatusCreated, &hook)
	require.Equal(t, "/webhooks/"+hook.ID, resp.header.Get("Location"))
	return hook
}

// createDev registers a webhook for devURL with these event patterns.
func (b *webhookBundle) createDev(t *testing.T, events ...string) webhookJSON {
	t.Helper()
	patterns, err := json.Marshal(events)
	require.NoError(t, err)
	return b.create(t, fmt.Sprintf(`{"url":%q,"events":%s}`, devURL, patterns))
}

// storedSecrets reads the stored forms of a webhook's secrets.
func (b *webhookBundle) storedSecrets(t *testing.T, id string) (secret string, previous *string) {
	t.Helper()
	err := b.pool.QueryRow(t.Context(), `SELECT secret, previous_secret FROM civicbase.webhooks WHERE id = $1`, id).
		Scan(&secret, &previous)
	require.NoError(t, err)
	return secret, previous
}

// newKey returns a base64 AES-256 key for delivery.NewCipher.
func newKey() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

func TestWebhookCreate(t *testing.T) {
	t.Parallel()

	t.Run("GeneratedSecretShownOnce", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		hook := bundle.create(t, `{"url":"`+devURL+`","events":["User.*","data.deleted"],"description":"CRM sync"}`)

		require.Regexp(t, `^wh_[a-z2-7]{20}$`, hook.ID)
		require.Equal(t, devURL, hook.URL)
		require.Equal(t, []string{"User.*", "data.deleted"}, hook.Events)
		require.Equal(t, "CRM sync", hook.Description)
		require.True(t, hook.Active)
		require.Nil(t, hook.DisabledReason)
		require.Nil(t, hook.RotationExpiresAt)
		require.WithinDuration(t, time.Now(), hook.CreatedAt, time.Minute)
		require.NotNil(t, hook.Secret)
		secret := *hook.Secret
		require.True(t, strings.HasPrefix(secret, "whsec_"), "secret %q", secret)
		parsed, err := delivery.ParseSecret(secret)
		require.NoError(t, err)
		require.Len(t, parsed.Key(), 32)

		stored, previous := bundle.storedSecrets(t, hook.ID)
		require.Equal(t, "plain:"+secret, stored)
		require.Nil(t, previous)

		for _, path := range []string{"/webhooks/" + hook.ID, "/webhooks"} {
			resp := bundle.get(t, path)
			require.Equal(t, http.StatusOK, resp.status, "path %s: %s", path, resp.body)
			require.NotContains(t, string(resp.body), secret, "path %s", path)
			require.NotContains(t, string(resp.body), `"secret"`, "path %s", path)
		}
		logs := bundle.logs.String()
		require.Contains(t, logs, `"msg":"webhook created"`)
		require.Contains(t, logs, `"webhook_id":"`+hook.ID+`"`)
		require.NotContains(t, logs, secret)
		require.NotContains(t, logs, strings.TrimPrefix(secret, "whsec_"))
	})

	t.Run("EncryptedAtRest", func(t *testing.T) {
		t.Parallel()
		cipher, err := delivery.NewCipher(newKey())
		require.NoError(t, err)
		opts := devOptions()
		opts.Cipher = cipher
		bundle := setupWebhooks(t, opts)

		hook := bundle.createDev(t, "*")

		require.NotNil(t, hook.Secret)
		stored, _ := bundle.storedSecrets(t, hook.ID)
		require.True(t, strings.HasPrefix(stored, "aesgcm:"), "stored %q", stored)
		require.NotContains(t, stored, strings.TrimPrefix(*hook.Secret, "whsec_"))
		opened, err := cipher.Open(stored)
		require.NoError(t, err)
		require.Equal(t, *hook.Secret, opened)
	})

	t.Run("GivenSecretNotEchoed", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		chosenSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a given key of 24 bytes!"))

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["*"],"secret":"`+chosenSecret+`"}`)

		var hook webhookJSON
		decodeStrict(t, resp, http.StatusCreated, &hook)
		require.Nil(t, hook.Secret)
		require.NotContains(t, string(resp.body), chosenSecret)
		stored, _ := bundle.storedSecrets(t, hook.ID)
		require.Equal(t, "plain:"+chosenSecret, stored)
		require.NotContains(t, bundle.logs.String(), chosenSecret)
	})

	t.Run("RawSecretAccepted", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		hook := bundle.create(t, `{"url":"`+devURL+`","events":["*"],"secret":"sixteen-byte-key"}`)

		stored, _ := bundle.storedSecrets(t, hook.ID)
		require.Equal(t, "plain:sixteen-byte-key", stored)
	})

	t.Run("GivenSecretInvalid", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		cases := map[string]string{
			"too-short-key":             "need at least 16 bytes",
			"whsec_c2hvcnQ=":            "need at least 16 bytes",
			"whsec_!!!!":                "not standard base64",
			"":                          "empty",
			"tab\tinside-a-long-secret": "control character",
		}

		for secret, want := range cases {
			body, err := json.Marshal(map[string]any{"url": devURL, "events": []string{"*"}, "secret": secret})
			require.NoError(t, err)

			resp := bundle.send(t, http.MethodPost, "/webhooks", string(body))

			detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_secret")
			require.Equal(t, "secret", detail.Field, "secret %q", secret)
			require.Contains(t, detail.Message, want, "secret %q", secret)
			if secret != "" {
				require.NotContains(t, string(resp.body), secret)
				require.NotContains(t, bundle.logs.String(), secret)
			}
		}
		list := decodeWebhookList(t, bundle.get(t, "/webhooks"))
		require.Empty(t, list.Webhooks)
	})

	t.Run("DuplicatePatternsStoredOnce", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		hook := bundle.createDev(t, "User.*", "user.signed_up", "User.*", "*")

		require.Equal(t, []string{"User.*", "user.signed_up", "*"}, hook.Events)
	})

	t.Run("Description", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		hook := bundle.create(t, `{"url":"`+devURL+`","events":["*"],"description":"`+strings.Repeat("é", 1000)+`"}`)
		require.Equal(t, strings.Repeat("é", 1000), hook.Description)

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["*"],"description":"`+strings.Repeat("é", 1001)+`"}`)
		detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_description")
		require.Equal(t, "description", detail.Field)
		require.Contains(t, detail.Message, "1001 characters")

		resp = bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["*"],"description":"a\u0000b"}`)
		detail = requireError(t, resp, http.StatusUnprocessableEntity, "invalid_description")
		require.Contains(t, detail.Message, "NUL")
	})

	t.Run("MissingMembers", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"events":["*"]}`)
		detail := requireError(t, resp, http.StatusUnprocessableEntity, "missing_field")
		require.Equal(t, "url", detail.Field)

		resp = bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`"}`)
		detail = requireError(t, resp, http.StatusUnprocessableEntity, "missing_field")
		require.Equal(t, "events", detail.Field)
	})
}

func TestWebhookURLValidation(t *testing.T) {
	t.Parallel()

	t.Run("RejectedOutsideDevelopmentMode", func(t *testing.T) {
		t.Parallel()
		// Every URL here is rejected before any connection or DNS lookup:
		// IP literals and localhost need no resolver.
		bundle := setupWebhooks(t, httpapi.Options{Guard: delivery.Guard{AllowPrivate: false}})
		cases := map[string]string{
			"http://127.0.0.1/x":             "https",
			"http://[::1]/x":                 "https",
			"http://169.254.169.254/latest":  "https",
			"http://10.0.0.1/":               "https",
			"http://localhost/":              "https",
			"https://127.0.0.1/":             "loopback",
			"https://[::1]/x":                "loopback",
			"https://169.254.169.254/latest": "link-local",
			"https://10.0.0.1/":              "private",
			"https://localhost/":             "loopback",
			"https://LOCALHOST./":            "loopback",
			"https://[::ffff:127.0.0.1]/":    "loopback",
			"https://2130706433/":            "non-standard form",
			"ftp://x":                        "scheme",
			"not a url":                      "absolute",
			"/relative/path":                 "absolute",
			"https://user:pw@192.0.2.1/":     "password",
			"":                               "empty",
			"https://" + strings.Repeat("a", 2100) + ".example/": "maximum",
		}

		for rawURL, want := range cases {
			body, err := json.Marshal(map[string]any{"url": rawURL, "events": []string{"*"}})
			require.NoError(t, err)

			resp := bundle.send(t, http.MethodPost, "/webhooks", string(body))

			detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_url")
			require.Equal(t, "url", detail.Field, "url %q", rawURL)
			require.Contains(t, detail.Message, want, "url %q", rawURL)
			switch {
			case strings.Contains(rawURL, ":pw@"):
				require.NotContains(t, detail.Message, ":pw@", "the password is never repeated")
				require.Contains(t, detail.Message, strconv.Quote("https://user:xxxxx@192.0.2.1/"))
			case rawURL != "" && len(rawURL) < 80:
				require.Contains(t, detail.Message, strconv.Quote(rawURL), "url %q", rawURL)
			}
		}
		list := decodeWebhookList(t, bundle.get(t, "/webhooks"))
		require.Empty(t, list.Webhooks)
	})

	t.Run("DevelopmentModeAllowsPrivate", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		hook := bundle.createDev(t, "*")

		require.Equal(t, devURL, hook.URL)
	})

	t.Run("DevelopmentModeStillNeedsAbsoluteURL", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"127.0.0.1:9/x","events":["*"]}`)

		requireError(t, resp, http.StatusUnprocessableEntity, "invalid_url")
	})

	t.Run("PatchRechecksURL", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, httpapi.Options{})
		// Registered directly in the store, because the API outside
		// development mode would need a public host, which means DNS.
		hook, err := bundle.store.CreateWebhook(t.Context(), store.Webhook{
			ID: "wh_aaaaaaaaaaaaaaaaaaaa", URL: "https://192.0.2.1/", Events: []string{"*"}, Secret: "plain:sixteen-byte-key",
		})
		require.NoError(t, err)

		resp := bundle.send(t, http.MethodPatch, "/webhooks/"+hook.ID, `{"url":"https://10.0.0.1/hook"}`)

		detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_url")
		require.Contains(t, detail.Message, `"https://10.0.0.1/hook"`)
		stored, err := bundle.store.Webhook(t.Context(), hook.ID)
		require.NoError(t, err)
		require.Equal(t, "https://192.0.2.1/", stored.URL)
	})
}

func TestWebhookEventPatterns(t *testing.T) {
	t.Parallel()

	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		patterns := []string{
			"*", "data.created", "data.updated", "data.deleted", "data.truncated",
			"User.created", "User.updated", "User.deleted", "User.truncated", "User.*", "Project.*", "user.signed_up",
		}

		hook := bundle.createDev(t, patterns...)

		require.Equal(t, patterns, hook.Events)
	})

	t.Run("Rejected", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		cases := map[string]string{
			"user.created":    "Valid patterns are",
			"Order.*":         "(watched models: Project, User)",
			"data.*":          `"*"`,
			"webhook.test":    "data.truncated",
			"User.bogus":      "the patterns of model User are User.created, User.updated, User.deleted, User.truncated and User.*",
			"user.*":          "did you mean User?",
			"":                "user.signed_up",
			"User":            "Valid patterns are",
			"*.created":       "Valid patterns are",
			"User.created ":   "the patterns of model User",
			"user.signed_up.": "Valid patterns are",
		}

		for pattern, want := range cases {
			body, err := json.Marshal(map[string]any{"url": devURL, "events": []string{"*", pattern}})
			require.NoError(t, err)

			resp := bundle.send(t, http.MethodPost, "/webhooks", string(body))

			detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_event")
			require.Equal(t, "events", detail.Field, "pattern %q", pattern)
			require.Contains(t, detail.Message, "unknown event pattern "+strconv.Quote(pattern), "pattern %q", pattern)
			require.Contains(t, detail.Message, want, "pattern %q", pattern)
		}
	})

	t.Run("EmptyOrTooMany", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":[]}`)
		detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_event")
		require.Contains(t, detail.Message, "events is empty")

		many, err := json.Marshal(slices.Repeat([]string{"*"}, 101))
		require.NoError(t, err)
		resp = bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":`+string(many)+`}`)
		detail = requireError(t, resp, http.StatusUnprocessableEntity, "invalid_event")
		require.Contains(t, detail.Message, "101 patterns")
	})

	t.Run("LongCatalogListTruncated", func(t *testing.T) {
		t.Parallel()
		opts := devOptions()
		opts.Catalog = func(context.Context) ([]string, []string, error) {
			models := make([]string, 50)
			for i := range models {
				models[i] = fmt.Sprintf("Model%02d", i)
			}
			return models, nil, nil
		}
		bundle := setupWebhooks(t, opts)

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["Nope.*"]}`)

		detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_event")
		require.Contains(t, detail.Message, "Model09 and 40 more")
		require.NotContains(t, detail.Message, "Model10")
		require.NotContains(t, detail.Message, "semantic")
	})

	t.Run("NoModelsWatched", func(t *testing.T) {
		t.Parallel()
		opts := devOptions()
		opts.Catalog = func(context.Context) ([]string, []string, error) { return nil, nil, nil }
		bundle := setupWebhooks(t, opts)

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["User.*"]}`)

		detail := requireError(t, resp, http.StatusUnprocessableEntity, "invalid_event")
		require.Contains(t, detail.Message, "no models are watched")
	})

	t.Run("CatalogFailure", func(t *testing.T) {
		t.Parallel()
		opts := devOptions()
		opts.Catalog = func(context.Context) ([]string, []string, error) {
			return nil, nil, errors.New("catalog unavailable")
		}
		bundle := setupWebhooks(t, opts)

		resp := bundle.send(t, http.MethodPost, "/webhooks", `{"url":"`+devURL+`","events":["*"]}`)

		requireError(t, resp, http.StatusInternalServerError, "internal_error")
		require.Contains(t, bundle.logs.String(), "catalog unavailable")
	})
}

func TestWebhookRequestBody(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	hook := bundle.createDev(t, "*")

	t.Run("Malformed", func(t *testing.T) {
		t.Parallel()
		cases := map[string]string{
			`{"url":`:        "unexpected end of JSON input",
			`{"url":"x",}`:   "not valid JSON",
			`{"url":"x"} {}`: "after top-level value",
			`[1,2]`:          "must be a JSON object, not array",
			`"text"`:         "must be a JSON object, not string",
			`null`:           "must be a JSON object, not null",
			"   ":            "request body is empty",
			"\xff":           "not valid JSON",
		}
		for body, want := range cases {
			resp := bundle.send(t, http.MethodPost, "/webhooks", body)

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_json")
			require.Contains(t, detail.Message, want, "body %q", body)
		}
	})

	t.Run("EmptyBody", func(t *testing.T) {
		t.Parallel()

		resp := bundle.send(t, http.MethodPost, "/webhooks", "")

		detail := requireError(t, resp, http.StatusBadRequest, "invalid_json")
		require.Equal(t, "request body is empty; send a JSON object with description, events, secret and url", detail.Message)
	})

	t.Run("UnknownMember", func(t *testing.T) {
		t.Parallel()
		for body, field := range map[string]string{
			`{"url":"` + devURL + `","events":["*"],"retries":3}`: "retries",
			`{"URL":"` + devURL + `","events":["*"]}`:             "URL",
			`{"url":"` + devURL + `","Events":["*"]}`:             "Events",
		} {
			resp := bundle.send(t, http.MethodPost, "/webhooks", body)

			detail := requireError(t, resp, http.StatusBadRequest, "unknown_field")
			require.Equal(t, field, detail.Field)
			require.Contains(t, detail.Message, "unknown member "+strconv.Quote(field))
			require.Contains(t, detail.Message, "description, events, secret and url")
		}
	})

	t.Run("WrongType", func(t *testing.T) {
		t.Parallel()
		cases := map[string][2]string{
			`{"url":1,"events":["*"]}`:                                 {"url", "url must be a string, not number"},
			`{"url":"` + devURL + `","events":"*"}`:                    {"events", "events must be an array of strings, not string"},
			`{"url":"` + devURL + `","events":["*",2]}`:                {"events", "events must be an array of strings, not number"},
			`{"url":"` + devURL + `","events":null}`:                   {"events", "events must be an array of strings, not null"},
			`{"url":"` + devURL + `","events":["*"],"description":{}}`: {"description", "description must be a string, not object"},
		}
		for body, want := range cases {
			resp := bundle.send(t, http.MethodPost, "/webhooks", body)

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_type")
			require.Equal(t, want[0], detail.Field, "body %s", body)
			require.Equal(t, want[1], detail.Message, "body %s", body)
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		t.Parallel()
		body := `{"url":"` + devURL + `","events":["*"],"description":"` + strings.Repeat("a", 64<<10) + `"}`

		for _, req := range []struct{ method, path string }{
			{http.MethodPost, "/webhooks"},
			{http.MethodPatch, "/webhooks/" + hook.ID},
			{http.MethodPost, "/webhooks/" + hook.ID + "/replay"},
		} {
			resp := bundle.send(t, req.method, req.path, body)

			detail := requireError(t, resp, http.StatusRequestEntityTooLarge, "payload_too_large")
			require.Contains(t, detail.Message, "64 KiB", "%s %s", req.method, req.path)
		}
	})

	t.Run("AtLimitAccepted", func(t *testing.T) {
		t.Parallel()
		prefix := `{"url":"` + devURL + `","events":["*"]}`
		body := prefix + strings.Repeat(" ", 64<<10-len(prefix))

		resp := bundle.send(t, http.MethodPost, "/webhooks", body)

		require.Equal(t, http.StatusCreated, resp.status, "body: %s", resp.body)
	})
}

func TestWebhookAuth(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	hook := bundle.createDev(t, "*")
	routes := []struct{ method, path string }{
		{http.MethodPost, "/webhooks"},
		{http.MethodGet, "/webhooks"},
		{http.MethodGet, "/webhooks/" + hook.ID},
		{http.MethodPatch, "/webhooks/" + hook.ID},
		{http.MethodDelete, "/webhooks/" + hook.ID},
		{http.MethodPost, "/webhooks/" + hook.ID + "/rotate-secret"},
		{http.MethodPost, "/webhooks/" + hook.ID + "/test"},
		{http.MethodGet, "/webhooks/" + hook.ID + "/deliveries"},
		{http.MethodPost, "/webhooks/" + hook.ID + "/deliveries/1/retry"},
		{http.MethodPost, "/webhooks/" + hook.ID + "/replay"},
	}

	for _, route := range routes {
		resp := bundle.do(t, route.method, route.path, "", strings.NewReader(`{"active":false}`))
		requireError(t, resp, http.StatusUnauthorized, "unauthorized")

		resp = bundle.do(t, route.method, route.path, "Bearer wrong-token", strings.NewReader(`{"active":false}`))
		requireError(t, resp, http.StatusUnauthorized, "invalid_token")
	}

	stored, err := bundle.store.Webhook(t.Context(), hook.ID)
	require.NoError(t, err)
	require.True(t, stored.Active)
	secret, _ := bundle.storedSecrets(t, hook.ID)
	require.Equal(t, "plain:"+*hook.Secret, secret)
	hooks, err := bundle.store.Webhooks(t.Context(), "", 10)
	require.NoError(t, err)
	require.Len(t, hooks, 1)
}

func TestWebhookRoutes(t *testing.T) {
	t.Parallel()

	t.Run("MethodNotAllowedOnParameterRoute", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPut, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa", `{}`)

		detail := requireError(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
		require.Equal(t, "DELETE, GET, HEAD, PATCH", resp.header.Get("Allow"))
		require.Contains(t, detail.Message, "use DELETE or GET or HEAD or PATCH")
	})

	t.Run("NotRegisteredWithoutStore", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.get(t, "/webhooks")

		requireError(t, resp, http.StatusNotFound, "not_found")
	})
}

// webhookList is the decoded body of GET /webhooks.
type webhookList struct {
	Webhooks []webhookJSON `json:"webhooks"`
	Next     string        `json:"next"`
	HasMore  bool          `json:"hasMore"`
}

func decodeWebhookList(t *testing.T, resp response) webhookList {
	t.Helper()
	var list webhookList
	decodeStrict(t, resp, http.StatusOK, &list)
	require.NotNil(t, list.Webhooks, `"webhooks" is null or missing: %s`, resp.body)
	return list
}

func TestWebhookList(t *testing.T) {
	t.Parallel()

	t.Run("Pages", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		var ids []string
		for range 5 {
			ids = append(ids, bundle.createDev(t, "*").ID)
		}
		slices.Sort(ids)

		page := decodeWebhookList(t, bundle.get(t, "/webhooks?limit=2"))
		require.Equal(t, ids[:2], webhookIDs(page.Webhooks))
		require.Equal(t, ids[1], page.Next)
		require.True(t, page.HasMore)

		page = decodeWebhookList(t, bundle.get(t, "/webhooks?limit=2&after="+page.Next))
		require.Equal(t, ids[2:4], webhookIDs(page.Webhooks))
		require.True(t, page.HasMore)

		page = decodeWebhookList(t, bundle.get(t, "/webhooks?limit=2&after="+page.Next))
		require.Equal(t, ids[4:], webhookIDs(page.Webhooks))
		require.Equal(t, ids[4], page.Next)
		require.False(t, page.HasMore)

		page = decodeWebhookList(t, bundle.get(t, "/webhooks?after="+page.Next))
		require.Empty(t, page.Webhooks)
		require.Equal(t, ids[4], page.Next)
		require.False(t, page.HasMore)

		page = decodeWebhookList(t, bundle.get(t, "/webhooks"))
		require.Equal(t, ids, webhookIDs(page.Webhooks))
		for _, hook := range page.Webhooks {
			require.Nil(t, hook.Secret)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		page := decodeWebhookList(t, bundle.get(t, "/webhooks"))

		require.Empty(t, page.Webhooks)
		require.Empty(t, page.Next)
		require.False(t, page.HasMore)
	})

	t.Run("InvalidParameters", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		for query, field := range map[string]string{
			"limit=0": "limit", "limit=201": "limit", "limit=x": "limit", "limit=-1": "limit",
			"after=nope": "after", "after=wh_UPPER": "after", "limit=1&limit=2": "limit",
		} {
			resp := bundle.get(t, "/webhooks?"+query)

			detail := requireError(t, resp, http.StatusBadRequest, "invalid_parameter")
			require.Equal(t, field, detail.Field, "query %s", query)
		}
	})
}

func webhookIDs(hooks []webhookJSON) []string {
	ids := make([]string, len(hooks))
	for i, hook := range hooks {
		ids[i] = hook.ID
	}
	return ids
}

func TestWebhookGet(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	hook := bundle.createDev(t, "User.*")

	var got webhookJSON
	decodeStrict(t, bundle.get(t, "/webhooks/"+hook.ID), http.StatusOK, &got)

	require.Equal(t, hook.ID, got.ID)
	require.Equal(t, []string{"User.*"}, got.Events)
	require.Nil(t, got.Secret)
	require.True(t, got.CreatedAt.Equal(hook.CreatedAt))

	for _, id := range []string{"wh_aaaaaaaaaaaaaaaaaaaa", "nope", "wh_" + strings.Repeat("a", 100), "WH_X"} {
		resp := bundle.get(t, "/webhooks/"+id)

		detail := requireError(t, resp, http.StatusNotFound, "not_found")
		require.Contains(t, detail.Message, "no webhook with id "+strconv.Quote(id)[:min(len(strconv.Quote(id)), 40)], "id %s", id)
	}
}

func TestWebhookUpdate(t *testing.T) {
	t.Parallel()

	t.Run("ChangesGivenMembers", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.create(t, `{"url":"`+devURL+`","events":["*"],"description":"old"}`)

		resp := bundle.send(t, http.MethodPatch, "/webhooks/"+hook.ID, `{"events":["Project.updated"],"url":"http://127.0.0.1:9/y"}`)

		var got webhookJSON
		decodeStrict(t, resp, http.StatusOK, &got)
		require.Equal(t, []string{"Project.updated"}, got.Events)
		require.Equal(t, "http://127.0.0.1:9/y", got.URL)
		require.Equal(t, "old", got.Description)
		require.Nil(t, got.Secret)
		require.False(t, got.UpdatedAt.Before(hook.UpdatedAt))

		resp = bundle.send(t, http.MethodPatch, "/webhooks/"+hook.ID, `{"description":""}`)
		decodeStrict(t, resp, http.StatusOK, &got)
		require.Empty(t, got.Description)
		require.Contains(t, bundle.logs.String(), `"msg":"webhook updated"`)
	})

	t.Run("DisableAndReenable", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		// The dispatcher disables an endpoint that keeps failing.
		require.NoError(t, bundle.store.DisableWebhook(t.Context(), hook.ID, "failing for 3 days"))

		var got webhookJSON
		decodeStrict(t, bundle.get(t, "/webhooks/"+hook.ID), http.StatusOK, &got)
		require.False(t, got.Active)
		require.Equal(t, "failing for 3 days", *got.DisabledReason)

		decodeStrict(t, bundle.send(t, http.MethodPatch, "/webhooks/"+hook.ID, `{"active":true}`), http.StatusOK, &got)
		require.True(t, got.Active)
		require.Nil(t, got.DisabledReason)
		require.Nil(t, got.FailingSince)

		decodeStrict(t, bundle.send(t, http.MethodPatch, "/webhooks/"+hook.ID, `{"active":false}`), http.StatusOK, &got)
		require.False(t, got.Active)
		require.NotNil(t, got.DisabledReason)
	})

	t.Run("InvalidRequests", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())
		hook := bundle.createDev(t, "*")
		path := "/webhooks/" + hook.ID

		requireError(t, bundle.send(t, http.MethodPatch, path, ""), http.StatusBadRequest, "invalid_json")
		requireError(t, bundle.send(t, http.MethodPatch, path, `{}`), http.StatusBadRequest, "empty_update")
		detail := requireError(t, bundle.send(t, http.MethodPatch, path, `{"secret":"sixteen-byte-key"}`), http.StatusBadRequest, "unknown_field")
		require.Equal(t, "secret", detail.Field)
		detail = requireError(t, bundle.send(t, http.MethodPatch, path, `{"active":"yes"}`), http.StatusBadRequest, "invalid_type")
		require.Equal(t, "active", detail.Field)
		detail = requireError(t, bundle.send(t, http.MethodPatch, path, `{"url":null}`), http.StatusBadRequest, "invalid_type")
		require.Equal(t, "url must be a string, not null", detail.Message)
		detail = requireError(t, bundle.send(t, http.MethodPatch, path, `{"events":["Nope.*"]}`), http.StatusUnprocessableEntity, "invalid_event")
		require.Contains(t, detail.Message, `"Nope.*"`)
		requireError(t, bundle.send(t, http.MethodPatch, path, `{"events":[]}`), http.StatusUnprocessableEntity, "invalid_event")

		var got webhookJSON
		decodeStrict(t, bundle.get(t, path), http.StatusOK, &got)
		require.Equal(t, []string{"*"}, got.Events)
		require.True(t, got.Active)
	})

	t.Run("UnknownID", func(t *testing.T) {
		t.Parallel()
		bundle := setupWebhooks(t, devOptions())

		resp := bundle.send(t, http.MethodPatch, "/webhooks/wh_aaaaaaaaaaaaaaaaaaaa", `{"active":true}`)

		detail := requireError(t, resp, http.StatusNotFound, "not_found")
		require.Contains(t, detail.Message, `"wh_aaaaaaaaaaaaaaaaaaaa"`)
	})
}

func TestWebhookDelete(t *testing.T) {
	t.Parallel()
	bundle := setupWebhooks(t, devOptions())
	hook := bundle.createDev(t, "*")
	kept := bundle.createDev(t, "*")

	resp := bundle.send(t, http.MethodDelete, "/webhooks/"+hook.ID, "")
	require.Equal(t, http.StatusNoContent, resp.status, "body: %s", resp.body)
	require.Empty(t, resp.body)

	detail := requireError(t, bundle.get(t, "/webhooks/"+hook.ID), http.StatusNotFound, "not_found")
	require.Contains(t, detail.Message, strconv.Quote(hook.ID))
	requireError(t, bundle.send(t, http.MethodDelete, "/webhooks/"+hook.ID, ""), http.StatusNotFound, "not_found")
	require.Equal(t, []string{kept.ID}, webhookIDs(decodeWebhookList(t, bundle.get(t, "/webhooks")).Webhooks))
	logs := bundle.logs.String()
	require.Contains(t, logs, `"msg":"webhook deleted"`)
	require.Contains(t, logs, `"webhook_id":"`+hook.ID+`"`)
}
