package hub

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/civicbase/civicbase/store"
)

// grant is the set of models an authenticated session may subscribe to,
// with the column values that rows of each filtered model must have.
type grant struct {
	allModels bool
	models    map[string]bool
	filters   modelFilters
	expires   time.Time // zero for the admin token and JWTs without exp
}

func (g *grant) allows(model string) bool { return g.allModels || g.models[model] }

// permits reports whether the session may receive e, given its filter
// claim for e's model.
func (g *grant) permits(e *store.Event, row *eventRow) bool {
	if g == nil {
		return false
	}
	f := g.filters[e.Model]
	return f == nil || f.matches(row)
}

// tokenClaims are the claims of an accepted JWT. Models, when present,
// limits the models its holder may subscribe to; a JWT without it may see
// every model. Filter pins columns per model, model → column → value, so
// the holder receives only rows that have those values.
type tokenClaims struct {
	Models []string                              `json:"models"`
	Filter map[string]map[string]json.RawMessage `json:"filter"`
	jwt.RegisteredClaims
}

var errInvalidToken = errors.New("invalid token")

// checkToken accepts the admin token and HS256 JWTs signed with the JWT
// secret that have not expired.
func (h *Hub) checkToken(token string) (*grant, error) {
	admin := h.cfg.AdminToken.Reveal()
	if admin != "" && subtle.ConstantTimeCompare([]byte(token), []byte(admin)) == 1 {
		return &grant{allModels: true}, nil
	}
	secret := h.cfg.JWTSecret.Reveal()
	if secret == "" {
		return nil, errInvalidToken
	}

	var claims tokenClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		return []byte(secret), nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidToken, err)
	}
	filters, err := parseModelFilters(claims.Filter)
	if err != nil {
		return nil, fmt.Errorf("%w: filter claim: %w", errInvalidToken, err)
	}
	g := &grant{allModels: claims.Models == nil, filters: filters}
	if claims.ExpiresAt != nil {
		g.expires = claims.ExpiresAt.Time
	}
	if claims.Models != nil {
		g.models = make(map[string]bool, len(claims.Models))
		for _, m := range claims.Models {
			g.models[m] = true
		}
	}
	return g, nil
}

// authenticate handles {"type":"authenticate"}. A rejected token gets an
// error and close code 4001.
func (h *Hub) authenticate(c *client, msg clientMessage) {
	g, err := h.checkToken(msg.Token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.grant != nil {
		c.enqueueLocked(errorMessage(codeAlreadyAuthenticated, "session is already authenticated; send refresh to replace its token", ""), "")
		return
	}
	if err != nil {
		c.enqueueLocked(errorMessage(codeInvalidToken, err.Error(), ""), "")
		c.closeLocked(closeInvalidToken, "invalid or expired token")
		return
	}
	if c.authTimer != nil {
		c.authTimer.Stop()
	}
	c.setGrantLocked(g)
	c.enqueueLocked(msgAuthenticated, "")
}

// refresh handles {"type":"refresh"}: a valid token replaces the session's
// grant, and each subscription the new grant does not allow is removed with
// a subscription_revoked error before the refreshed reply. A rejected token
// gets an error and close code 4001.
func (h *Hub) refresh(c *client, msg clientMessage) {
	g, err := h.checkToken(msg.Token)
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.enqueueLocked(errorMessage(codeInvalidToken, err.Error(), ""), "")
		c.closeLocked(closeInvalidToken, "invalid or expired token")
		return
	}

	for _, id := range slices.Sorted(maps.Keys(c.subs)) {
		sub := c.subs[id]
		subErr := sub.checkGrant(g)
		if subErr == nil {
			continue
		}
		delete(c.subs, id)
		h.unindexLocked(c, sub)
		c.enqueueLocked(errorMessage(codeSubscriptionRevoked, "subscription removed: "+subErr.message, id), "")
	}
	// Fan-out reads the grant under c.mu, so every event after this point
	// is checked against the new token.
	c.setGrantLocked(g)
	c.enqueueLocked(msgRefreshed, "")
}

// setGrantLocked replaces the session's grant and closes the session with
// 4001 when the grant expires. c.mu must be held.
func (c *client) setGrantLocked(g *grant) {
	c.grant = g
	c.grantVersion++
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
		c.expiryTimer = nil
	}
	if g.expires.IsZero() {
		return
	}
	version := c.grantVersion
	c.expiryTimer = time.AfterFunc(time.Until(g.expires), func() { c.expire(version) })
}

// expire closes the session with 4001 unless a refresh replaced the grant
// of the given version meanwhile.
func (c *client) expire(version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.grantVersion != version {
		return
	}
	c.enqueueLocked(errorMessage(codeTokenExpired,
		"token expired; send refresh with a new token before exp, or reconnect and authenticate again", ""), "")
	c.closeLocked(closeInvalidToken, "token expired")
}

func (c *client) authenticated() *grant {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grant
}
