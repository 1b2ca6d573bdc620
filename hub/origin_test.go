package hub_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// dialOrigin opens a session with the given Origin header, none when
// origin is empty, and returns the handshake's HTTP status.
func dialOrigin(t *testing.T, wsURL, origin string) int {
	t.Helper()
	header := http.Header{}
	if origin != "" {
		header.Set("Origin", origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, wsURL+"/v1/realtime", header)
	if err != nil {
		require.ErrorIs(t, err, websocket.ErrBadHandshake)
	} else {
		conn.Close()
	}
	require.NotNil(t, resp)
	resp.Body.Close()
	return resp.StatusCode
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	byDefault := setup(t, testConfig())
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	listed := setup(t, cfg)
	cfg.AllowedOrigins = []string{"*"}
	anyOrigin := setup(t, cfg)
	u, err := url.Parse(byDefault.url)
	require.NoError(t, err)
	sameHost := "http://" + u.Host

	tests := []struct {
		name   string
		url    string
		origin string
		want   int
	}{
		{"DefaultNoOrigin", byDefault.url, "", http.StatusSwitchingProtocols},
		{"DefaultSameHost", byDefault.url, sameHost, http.StatusSwitchingProtocols},
		{"DefaultOtherOrigin", byDefault.url, "https://app.example.com", http.StatusForbidden},
		{"DefaultSameHostOtherPort", byDefault.url, "http://127.0.0.1:1", http.StatusForbidden},
		{"ListedOrigin", listed.url, "https://app.example.com", http.StatusSwitchingProtocols},
		{"ListedOriginOtherCase", listed.url, "https://App.Example.com", http.StatusSwitchingProtocols},
		{"ListedOtherScheme", listed.url, "http://app.example.com", http.StatusForbidden},
		{"ListedOtherOrigin", listed.url, "https://evil.example.com", http.StatusForbidden},
		{"ListedNoOrigin", listed.url, "", http.StatusSwitchingProtocols},
		{"AnyOrigin", anyOrigin.url, "https://evil.example.com", http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, dialOrigin(t, tt.url, tt.origin))
		})
	}
}
