package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

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
// is ever logged or echoed. A wrong token counts against the client's
// address, and an address with no attempts left gets 429 before its token
// is checked.
func (a *api) requireToken(c *fiber.Ctx) error {
	addr := clientAddr(c)
	if retryAfter, ok := a.authLimiter.Begin(addr); !ok {
		return errTooManyAttempts(c, retryAfter)
	}
	err := a.checkBearer(c)
	// A request without a bearer token guesses nothing, so only a wrong
	// token counts as a failed attempt.
	a.authLimiter.End(addr, err == nil || err.Code != codeInvalidToken)
	if err != nil {
		return err
	}
	return c.Next()
}

// codeInvalidToken is the error code of a bearer token that is not the
// admin token.
const codeInvalidToken = "invalid_token"

// checkBearer checks the request's bearer token against the admin token.
func (a *api) checkBearer(c *fiber.Ctx) *apiError {
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
			Code:    codeInvalidToken,
			Message: "bearer token is not valid; send the admin token set in CIVICBASE_ADMIN_TOKEN",
		}
	}
	return nil
}

// clientAddr returns the IP address of the connection's peer. fiber's
// net/http adaptor fills it in from http.Request.RemoteAddr.
func clientAddr(c *fiber.Ctx) netip.Addr {
	addr, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	return addr.Unmap()
}

// errTooManyAttempts is the 429 response for an address that has used up
// its failed authentication attempts. Retry-After is in whole seconds,
// rounded up.
func errTooManyAttempts(c *fiber.Ctx, retryAfter time.Duration) error {
	seconds := int64(math.Ceil(retryAfter.Seconds()))
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(seconds, 10))
	return &apiError{
		Status: http.StatusTooManyRequests,
		Code:   "too_many_attempts",
		Message: fmt.Sprintf("too many failed authentication attempts from this address; retry in %d s with the admin token set in CIVICBASE_ADMIN_TOKEN",
			seconds),
	}
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
