package hub_test

import (
	"encoding/json"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// A models claim of null is what Go's encoding/json writes for a nil
// []string, such as an issuer's list of a user who may see no model. It
// is not a list, so it must not pass as "no models claim", which lets the
// holder see every model: the token is rejected, or it may see nothing.
func TestJWTModelsClaimNullSeesNoModel(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	var issued struct {
		Models []string `json:"models"`
	}
	raw, err := json.Marshal(issued)
	require.NoError(t, err)
	require.JSONEq(t, `{"models":null}`, string(raw))
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"models": nil})})
	m := c.read()
	if m.Type == "error" {
		require.Equal(t, "invalid_token", m.Code)
		return
	}
	require.Equal(t, "authenticated", m.Type, "message %s", m.raw)

	c.send(map[string]any{"type": "subscribe", "id": "s1", "models": []string{"Project"}})
	m = c.read()
	require.Equal(t, "error", m.Type, "a token with models: null subscribed to Project: %s", m.raw)
	require.Equal(t, "forbidden_model", m.Code)
}

// A filter claim of null, Go's encoding/json output for a nil map, would
// otherwise read as no filter and show every row of the allowed models.
func TestJWTFilterClaimNullRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"models": []string{"Project"}, "filter": nil})})
	m := c.read()

	require.Equal(t, "error", m.Type, "message %s", m.raw)
	require.Equal(t, "invalid_token", m.Code)
	require.Contains(t, m.Message, "filter claim is null")
}

// An empty filter claim pins nothing, like a model that pins no column.
func TestJWTFilterClaimEmptyRejected(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	c := dial(t, b.url)

	c.send(map[string]string{"type": "authenticate", "token": signHS256(t, jwtSecret, jwt.MapClaims{"filter": map[string]any{}})})
	m := c.read()

	require.Equal(t, "error", m.Type, "message %s", m.raw)
	require.Equal(t, "invalid_token", m.Code)
	require.Contains(t, m.Message, "filter claim pins no model")
}
