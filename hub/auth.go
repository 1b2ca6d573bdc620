package hub

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// grant is the set of models an authenticated session may subscribe to.
type grant struct {
	allModels bool
	models    map[string]bool
}

func (g *grant) allows(model string) bool { return g.allModels || g.models[model] }

// tokenClaims are the claims of an accepted JWT. Models, when present,
// limits the models its holder may subscribe to; a JWT without it may see
// every model.
type tokenClaims struct {
	Models []string `json:"models"`
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
	if claims.Models == nil {
		return &grant{allModels: true}, nil
	}
	g := &grant{models: make(map[string]bool, len(claims.Models))}
	for _, m := range claims.Models {
		g.models[m] = true
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
		c.enqueueLocked(errorMessage(codeAlreadyAuthenticated, "session is already authenticated", ""), "")
		return
	}
	if err != nil {
		c.enqueueLocked(errorMessage(codeInvalidToken, err.Error(), ""), "")
		c.closeLocked(closeInvalidToken, "invalid or expired token")
		return
	}
	c.grant = g
	if c.authTimer != nil {
		c.authTimer.Stop()
	}
	c.enqueueLocked(msgAuthenticated, "")
}

func (c *client) authenticated() *grant {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grant
}
