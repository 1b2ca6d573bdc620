package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/httpapi"
	"github.com/civicbase/civicbase/internal/authlimit"
)

// getWithHeader sends GET path with the admin token and one extra header.
func (b *testBundle) getWithHeader(t *testing.T, path, name, value string) (response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set(name, value)
	resp, err := b.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

func TestHeadersTooLarge(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, http.NotFoundHandler())

	t.Run("WithinLimit", func(t *testing.T) {
		resp, err := bundle.getWithHeader(t, "/events", "X-Padding", strings.Repeat("a", 30<<10))

		require.NoError(t, err)
		decodePage(t, resp)
	})

	t.Run("OverLimit", func(t *testing.T) {
		resp, err := bundle.getWithHeader(t, "/events", "X-Padding", strings.Repeat("a", 40<<10))

		require.NoError(t, err)
		detail := requireError(t, resp, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large")
		require.Contains(t, detail.Message, "more than the limit of 32768")
	})

	t.Run("OverLimitOnRealtimePath", func(t *testing.T) {
		resp, err := bundle.getWithHeader(t, "/v1/realtime", "X-Padding", strings.Repeat("a", 40<<10))

		require.NoError(t, err)
		requireError(t, resp, http.StatusRequestHeaderFieldsTooLarge, "headers_too_large")
	})

	t.Run("OverServerLimit", func(t *testing.T) {
		// net/http rejects these before any handler runs, with a body of
		// its own plain text, and closes the connection. The client may
		// still be writing then, and see a reset instead of the reply.
		resp, err := bundle.getWithHeader(t, "/events", "X-Padding", strings.Repeat("a", 100<<10))

		if err == nil {
			require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.status)
		}
	})
}

func TestFailedTokensBlockAddress(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{AuthLimiter: authlimit.New(authlimit.Config{Burst: 3, Interval: time.Hour}, nil)}, nil)
	for i := range 3 {
		resp := bundle.do(t, http.MethodGet, "/events", fmt.Sprintf("Bearer guess-%d", i), nil)
		requireError(t, resp, http.StatusUnauthorized, "invalid_token")
	}

	resp := bundle.get(t, "/events")

	detail := requireError(t, resp, http.StatusTooManyRequests, "too_many_attempts")
	require.Contains(t, detail.Message, "retry in")
	retryAfter, err := strconv.Atoi(resp.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", resp.header.Get("Retry-After"))
	require.Greater(t, retryAfter, 3500)
	require.LessOrEqual(t, retryAfter, 3600)
	require.Equal(t, http.StatusOK, bundle.do(t, http.MethodGet, "/healthz", "", nil).status, "routes without a token stay open")
}

func TestMissingTokenTakesNoAttempt(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{AuthLimiter: authlimit.New(authlimit.Config{Burst: 1, Interval: time.Hour}, nil)}, nil)
	for range 5 {
		resp := bundle.do(t, http.MethodGet, "/events", "", nil)
		requireError(t, resp, http.StatusUnauthorized, "unauthorized")
	}
	for range 5 {
		decodePage(t, bundle.get(t, "/events"))
	}

	resp := bundle.do(t, http.MethodGet, "/events", "Bearer wrong", nil)
	requireError(t, resp, http.StatusUnauthorized, "invalid_token")
	resp = bundle.get(t, "/events")

	requireError(t, resp, http.StatusTooManyRequests, "too_many_attempts")
}

// A browser sends a preflight before a cross-origin request with an
// Authorization header. Without CORS headers in the reply it sends nothing,
// so pages of other origins cannot call the API with a token.
func TestNoCORSHeaders(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)

	for _, method := range []string{http.MethodOptions, http.MethodGet} {
		req, err := http.NewRequestWithContext(t.Context(), method, bundle.url+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", "https://evil.example.com")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := bundle.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()

		for name := range resp.Header {
			require.False(t, strings.HasPrefix(strings.ToLower(name), "access-control-"), "%s response has %s", method, name)
		}
	}
}

// A client that sends its headers slowly is cut off once the header
// timeout passes.
func TestSlowHeadersTimeOut(t *testing.T) {
	t.Parallel()
	bundle := setup(t, httpapi.Options{}, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(bundle.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)

	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	start := time.Now()
	_, err = bufio.NewReader(conn).ReadString('\n')

	require.Error(t, err, "the server answered a request whose headers never ended")
	require.Less(t, time.Since(start), 29*time.Second, "the connection stayed open until the client gave up")
}
