package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
)

func TestEventsAuth(t *testing.T) {
	t.Parallel()

	t.Run("MissingHeader", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		resp := bundle.do(t, http.MethodGet, "/events", "", nil)

		detail := requireError(t, resp, http.StatusUnauthorized, "unauthorized")
		require.Contains(t, detail.Message, "Authorization: Bearer")
		require.Equal(t, "Bearer", resp.header.Get("WWW-Authenticate"))
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("NotBearerScheme", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for _, header := range []string{"Basic " + testToken, testToken, "Bearer", "Bearer    ", "Bearer" + testToken} {
			resp := bundle.do(t, http.MethodGet, "/events", header, nil)

			requireError(t, resp, http.StatusUnauthorized, "unauthorized")
			require.Equal(t, "Bearer", resp.header.Get("WWW-Authenticate"), "header %q", header)
		}
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("WrongToken", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for _, token := range []string{"wrong-token-value", testToken + "x", testToken[:len(testToken)-1], strings.ToUpper(testToken)} {
			resp := bundle.do(t, http.MethodGet, "/events", "Bearer "+token, nil)

			requireError(t, resp, http.StatusUnauthorized, "invalid_token")
			require.Equal(t, `Bearer error="invalid_token"`, resp.header.Get("WWW-Authenticate"))
		}
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("RightToken", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for _, header := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER  " + testToken + " "} {
			resp := bundle.do(t, http.MethodGet, "/events", header, nil)

			decodePage(t, resp)
			require.Empty(t, resp.header.Get("WWW-Authenticate"))
		}
		require.Equal(t, 3, bundle.events.callCount())
	})

	t.Run("EmptyAdminTokenRejectsAll", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		app := httpapi.New(httpapi.Options{Events: bundle.events})
		bundle.url = startServer(t, app, nil)

		resp := bundle.do(t, http.MethodGet, "/events", "Bearer "+testToken, nil)

		requireError(t, resp, http.StatusUnauthorized, "invalid_token")
		require.Zero(t, bundle.events.callCount())
	})

	t.Run("TokensNeverLogged", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)
		const wrongToken = "wrong-token-that-must-not-be-logged"

		bundle.do(t, http.MethodGet, "/events", "Bearer "+wrongToken, nil)
		bundle.do(t, http.MethodGet, "/events", "Bearer "+testToken, nil)
		bundle.do(t, http.MethodGet, "/nowhere", "Bearer "+testToken, nil)

		logs := bundle.logs.String()
		require.Contains(t, logs, "rejected bearer token")
		require.NotContains(t, logs, wrongToken)
		require.NotContains(t, logs, testToken)
	})

	t.Run("HealthNeedsNoToken", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, httpapi.Options{}, nil)

		for _, path := range []string{"/healthz", "/readyz"} {
			resp := bundle.do(t, http.MethodGet, path, "", nil)

			require.Equal(t, http.StatusOK, resp.status, "path %s: %s", path, resp.body)
		}
	})
}

func TestErrorBodyShape(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	unauthorized := bundle.do(t, http.MethodGet, "/events", "", nil)
	badLimit := bundle.do(t, http.MethodGet, "/events?limit=%3Cb%3E", "Bearer "+testToken, nil)

	require.Contains(t, string(unauthorized.body), `"field":null`, "field is present even when no parameter is at fault")
	require.Contains(t, string(badLimit.body), `"field":"limit"`)
	require.Contains(t, string(badLimit.body), `<b>`, "messages are not HTML-escaped")
}
