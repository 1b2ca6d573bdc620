package hub_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// soonExpiry is an exp one to two seconds ahead. JWT exp has a resolution
// of one second, so at least one second is left to authenticate.
func soonExpiry() time.Time {
	return time.Now().Truncate(time.Second).Add(2 * time.Second)
}

func TestRefreshExtendsAndNarrows(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	exp := soonExpiry()
	c.authenticate(signHS256(t, jwtSecret, jwt.MapClaims{"exp": exp.Unix(), "models": []string{"UserProfile", "Project"}}))
	c.subscribe("s1", []string{"UserProfile"}, nil)
	c.subscribe("s2", []string{"Project"}, nil)
	c.send(map[string]any{"type": "subscribe", "id": "s3", "models": []string{"UserProfile"},
		"filter": map[string]any{"UserProfile": map[string]any{"owner_id": 2}}})
	c.readType("subscribed")

	c.send(map[string]string{"type": "refresh", "token": signHS256(t, jwtSecret, jwt.MapClaims{
		"exp":    time.Now().Add(time.Hour).Unix(),
		"models": []string{"UserProfile"},
		"filter": map[string]any{"UserProfile": map[string]any{"owner_id": 1}},
	})})
	revokedModel := c.readType("error")
	revokedFilter := c.readType("error")
	c.readType("refreshed")

	require.Equal(t, "subscription_revoked", revokedModel.Code)
	require.Equal(t, "s2", revokedModel.ID)
	require.Contains(t, revokedModel.Message, `"Project"`)
	require.Equal(t, "subscription_revoked", revokedFilter.Code)
	require.Equal(t, "s3", revokedFilter.ID)
	require.Contains(t, revokedFilter.Message, `column "owner_id"`)

	other := b.rowEvent("UserProfile", "data.created", `{"owner_id":2}`, "")
	project := b.rowEvent("Project", "data.created", `{"owner_id":1}`, "")
	own := b.rowEvent("UserProfile", "data.created", `{"owner_id":1}`, "")
	b.write(t, other, project, own)
	require.Equal(t, own.ID, c.readType("create").ID)

	// The first token's exp passes, and the session stays open.
	time.Sleep(time.Until(exp) + 300*time.Millisecond)
	c.send(map[string]string{"type": "ping"})
	c.readType("pong")
	later := b.rowEvent("UserProfile", "data.created", `{"owner_id":1}`, "")
	b.write(t, later)
	require.Equal(t, later.ID, c.readType("create").ID)
	c.send(map[string]string{"type": "unsubscribe", "id": "s2"})
	require.Equal(t, "unknown_subscription", c.readType("error").Code)
}

func TestRefreshInvalidTokenCloses4001(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	c.authenticate(adminToken)
	c.subscribe("s1", []string{"UserProfile"}, nil)

	c.send(map[string]string{"type": "refresh", "token": signHS256(t, "another-secret-0123456789", jwt.MapClaims{})})
	closeErr, msgs := c.readClose()

	require.Equal(t, 4001, closeErr.Code)
	require.Len(t, msgs, 1)
	require.Equal(t, "invalid_token", msgs[0].Code)
}

func TestRefreshBeforeAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]string{"type": "refresh", "token": adminToken})
	closeErr, msgs := c.readClose()

	require.Equal(t, 4011, closeErr.Code)
	require.Len(t, msgs, 1)
	require.Equal(t, "not_authenticated", msgs[0].Code)
}

func TestExpiredTokenCloses4001(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)
	exp := soonExpiry()
	c.authenticate(signHS256(t, jwtSecret, jwt.MapClaims{"exp": exp.Unix()}))
	c.subscribe("s1", []string{"UserProfile"}, nil)
	e := b.rowEvent("UserProfile", "data.created", `{}`, "")
	b.write(t, e)
	require.Equal(t, e.ID, c.readType("create").ID)

	closeErr, msgs := c.readClose()

	require.False(t, time.Now().Before(exp), "closed before exp")
	require.Equal(t, 4001, closeErr.Code)
	require.Equal(t, "token expired", closeErr.Text)
	require.Len(t, msgs, 1)
	require.Equal(t, "token_expired", msgs[0].Code)
}
