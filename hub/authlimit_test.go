package hub_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/authlimit"
)

// requireTooManyAttempts reads the too_many_attempts error and the 4029
// close that end a session whose address has no attempts left.
func requireTooManyAttempts(t *testing.T, c *wsClient) {
	t.Helper()
	closeErr, msgs := c.readClose()
	require.Equal(t, 4029, closeErr.Code)
	require.Len(t, msgs, 1)
	require.Equal(t, "error", msgs[0].Type)
	require.Equal(t, "too_many_attempts", msgs[0].Code)
	var reply struct {
		RetryAfter int `json:"retryAfter"`
	}
	require.NoError(t, json.Unmarshal(msgs[0].raw, &reply))
	require.Greater(t, reply.RetryAfter, 3500, "retryAfter of a one-hour interval: %s", msgs[0].raw)
}

// requireRejected sends authenticate with a wrong token and reads the 4001
// close.
func requireRejected(t *testing.T, url string) {
	t.Helper()
	c := dial(t, url)
	c.send(map[string]string{"type": "authenticate", "token": "wrong-token"})
	closeErr, _ := c.readClose()
	require.Equal(t, 4001, closeErr.Code)
}

func TestAuthenticateFailuresBlockAddress(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthLimiter = authlimit.New(authlimit.Config{Burst: 3, Interval: time.Hour}, nil)
	b := setup(t, cfg)
	for range 3 {
		requireRejected(t, b.url)
	}

	c := dial(t, b.url)
	c.send(map[string]string{"type": "authenticate", "token": adminToken})

	requireTooManyAttempts(t, c)
}

func TestAuthenticateSuccessTakesNoAttempt(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthLimiter = authlimit.New(authlimit.Config{Burst: 1, Interval: time.Hour}, nil)
	b := setup(t, cfg)

	for range 5 {
		dial(t, b.url).authenticate(adminToken)
	}
	requireRejected(t, b.url)
	c := dial(t, b.url)
	c.send(map[string]string{"type": "authenticate", "token": adminToken})

	requireTooManyAttempts(t, c)
}

func TestRefreshFailuresBlockAddress(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthLimiter = authlimit.New(authlimit.Config{Burst: 2, Interval: time.Hour}, nil)
	b := setup(t, cfg)
	token := signHS256(t, jwtSecret, jwt.MapClaims{"models": []string{"UserProfile"}})
	for range 2 {
		c := dial(t, b.url)
		c.authenticate(token)
		c.send(map[string]string{"type": "refresh", "token": adminToken + "-guess"})
		closeErr, _ := c.readClose()
		require.Equal(t, 4001, closeErr.Code)
	}

	c := dial(t, b.url)
	c.send(map[string]string{"type": "authenticate", "token": adminToken})

	requireTooManyAttempts(t, c)
}
