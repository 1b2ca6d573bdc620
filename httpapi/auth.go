package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/civicbase/civicbase/config"
)

// setToken stores the SHA-256 of the admin token. Comparing hashes of equal
// length keeps the comparison's time independent of the token's length as
// well as its content.
func (a *api) setToken(token config.Secret) {
	a.hasToken = token != ""
	a.tokenHash = sha256.Sum256([]byte(token.Reveal()))
}

// requireToken lets a request through only with the admin token in an
// "Authorization: Bearer" header. Neither the expected nor the given token
// is ever logged or echoed.
func (a *api) requireToken(c *fiber.Ctx) error {
	header := c.Get(fiber.HeaderAuthorization)
	token, ok := bearerToken(header)
	if !ok {
		c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
		message := "missing Authorization header; send Authorization: Bearer <admin token>"
		if header != "" {
			message = "Authorization header does not carry a bearer token; send Authorization: Bearer <admin token>"
		}
		return &apiError{Status: http.StatusUnauthorized, Code: "unauthorized", Message: message}
	}

	givenHash := sha256.Sum256([]byte(token))
	if !a.hasToken || subtle.ConstantTimeCompare(givenHash[:], a.tokenHash[:]) != 1 {
		// RFC 6750 section 3 names this error in the challenge.
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
		a.logger.DebugContext(c.UserContext(), "rejected bearer token",
			"method", c.Method(), "path", c.Path(), "remote_addr", c.IP())
		return &apiError{
			Status:  http.StatusUnauthorized,
			Code:    "invalid_token",
			Message: "bearer token is not valid; send the admin token set in CIVICBASE_ADMIN_TOKEN",
		}
	}
	return c.Next()
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive, as RFC 7235 requires.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
