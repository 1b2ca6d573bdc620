package hub

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/internal/authlimit"
	"github.com/civicbase/civicbase/store"
)

// closeTooManyAttempts closes a session whose address has used up its
// failed authentication attempts, the WebSocket counterpart of HTTP 429.
const closeTooManyAttempts = 4029

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

// Claims of a JWT read by the hub. models, when present, limits the models
// its holder may subscribe to; a JWT without it may see every model.
// filter pins columns per model, model → column → value, so the holder
// receives only rows that have those values. Claims are read from
// jwt.MapClaims because its names match exactly: decoded into a struct,
// Go's encoding/json would take a "Models" member, another claim to every
// other JWT library, for models.
const (
	modelsClaim = "models"
	filterClaim = "filter"
)

// rawClaim returns the JSON of claim name and whether it is present. The
// claims must be parsed with jwt.WithJSONNumber so that numbers keep their
// text.
func rawClaim(claims jwt.MapClaims, name string) (json.RawMessage, bool) {
	value, ok := claims[name]
	if !ok {
		return nil, false
	}
	// The value was decoded from JSON, so it encodes again. Were it not,
	// the nil result would make decodeClaim reject the claim.
	raw, _ := json.Marshal(value)
	return raw, true
}

// decodeClaim decodes a present claim into out. null is rejected: an issuer
// that meant "nothing" would otherwise grant everything.
func decodeClaim(name string, raw json.RawMessage, out any, want string) error {
	if string(raw) == "null" {
		return fmt.Errorf("%s claim is null; give %s, or leave the claim out", name, want)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s claim is not %s", name, want)
	}
	return nil
}

var errInvalidToken = errors.New("invalid token")

// checkToken accepts the admin token and HS256 JWTs signed with the JWT
// secret that have not expired. The admin token is compared by its SHA-256,
// so the time taken depends on neither its content nor its length.
func (h *Hub) checkToken(token string) (*grant, error) {
	admin := h.cfg.AdminToken.Reveal()
	adminHash, tokenHash := sha256.Sum256([]byte(admin)), sha256.Sum256([]byte(token))
	if admin != "" && subtle.ConstantTimeCompare(tokenHash[:], adminHash[:]) == 1 {
		return &grant{allModels: true}, nil
	}
	secret := h.cfg.JWTSecret.Reveal()
	if secret == "" {
		return nil, errInvalidToken
	}

	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		return []byte(secret), nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithJSONNumber())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidToken, err)
	}

	var filterSpec map[string]map[string]json.RawMessage
	if raw, ok := rawClaim(claims, filterClaim); ok {
		if err := decodeClaim(filterClaim, raw, &filterSpec, `an object of model → column → value`); err != nil {
			return nil, fmt.Errorf("%w: %w", errInvalidToken, err)
		}
		if len(filterSpec) == 0 {
			// Like a model that pins no column, an empty claim narrows
			// nothing, so it more likely means a bug than every row.
			return nil, fmt.Errorf("%w: filter claim pins no model; give model → column → value, or leave the claim out", errInvalidToken)
		}
	}
	filters, err := parseModelFilters(filterSpec)
	if err != nil {
		return nil, fmt.Errorf("%w: filter claim: %w", errInvalidToken, err)
	}
	if err := h.checkFilterClaim(filterSpec); err != nil {
		return nil, fmt.Errorf("%w: filter claim: %w", errInvalidToken, err)
	}

	g := &grant{allModels: true, filters: filters}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		g.expires = exp.Time
	}
	if raw, ok := rawClaim(claims, modelsClaim); ok {
		var models []string
		if err := decodeClaim(modelsClaim, raw, &models, "a list of model names"); err != nil {
			return nil, fmt.Errorf("%w: %w", errInvalidToken, err)
		}
		g.allModels = false
		g.models = make(map[string]bool, len(models))
		for _, m := range models {
			g.models[m] = true
		}
	}
	return g, nil
}

// checkFilterClaim rejects a filter claim that would pin nothing: a model
// with no column, or a model name that is not watched, such as "project"
// for Project. Either would let the token see every row of the model it
// was meant to narrow, so the token is rejected rather than trusted.
func (h *Hub) checkFilterClaim(claim map[string]map[string]json.RawMessage) error {
	for _, model := range slices.Sorted(maps.Keys(claim)) {
		if len(claim[model]) == 0 {
			return fmt.Errorf("model %q pins no column; pin at least one, such as {\"owner_id\":42}", model)
		}
	}
	if len(claim) == 0 || h.cfg.Catalog == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), catalogTimeout)
	defer cancel()
	models, _, err := h.cfg.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("reading the watched models to check it failed: %w", err)
	}
	for _, model := range slices.Sorted(maps.Keys(claim)) {
		if !slices.Contains(models, model) {
			return fmt.Errorf("model %q is not watched, so the filter would narrow nothing; use a watched model name (%s)",
				model, strings.Join(models, ", "))
		}
	}
	return nil
}

// errTooManyAttempts means the session's address has used up its failed
// authentication attempts, so its token was not checked.
type errTooManyAttempts struct{ retryAfter time.Duration }

func (e *errTooManyAttempts) Error() string {
	return fmt.Sprintf("too many failed authentication attempts from this address; reconnect and retry in %d s",
		e.seconds())
}

// seconds returns the wait in whole seconds, rounded up.
func (e *errTooManyAttempts) seconds() int64 { return int64(math.Ceil(e.retryAfter.Seconds())) }

// checkAttempt checks the token of an authenticate or refresh message. A
// rejected token counts against the session's address, and a token from an
// address without attempts left is not checked: the error is then an
// *errTooManyAttempts.
func (h *Hub) checkAttempt(c *client, token string) (*grant, error) {
	addr := c.remoteAddr()
	if retryAfter, ok := h.cfg.AuthLimiter.Begin(addr); !ok {
		return nil, &errTooManyAttempts{retryAfter: retryAfter}
	}
	g, err := h.checkToken(token)
	h.cfg.AuthLimiter.End(addr, err == nil)
	return g, err
}

// remoteAddr returns the IP address of the session's peer.
func (c *client) remoteAddr() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil || c.session.Request == nil {
		return netip.Addr{}
	}
	return authlimit.AddrFromRemote(c.session.Request.RemoteAddr)
}

// rejectTokenLocked sends the error for a rejected token and closes the
// session: 4029 when its address has no attempts left, 4001 otherwise.
// c.mu must be held.
func (c *client) rejectTokenLocked(err error) {
	var limited *errTooManyAttempts
	if errors.As(err, &limited) {
		var o canon.Object
		o.Add("type", jsonString("error"))
		o.Add("code", jsonString(codeTooManyAttempts))
		o.Add("message", jsonString(limited.Error()))
		o.Add("retryAfter", strconv.AppendInt(nil, limited.seconds(), 10))
		c.enqueueLocked(o.AppendTo(nil), "")
		c.closeLocked(closeTooManyAttempts, "too many failed authentication attempts")
		return
	}
	c.enqueueLocked(errorMessage(codeInvalidToken, err.Error(), ""), "")
	c.closeLocked(closeInvalidToken, "invalid or expired token")
}

// authenticate handles {"type":"authenticate"}. A rejected token gets an
// error and close code 4001, or 4029 when the session's address has used
// up its failed attempts.
func (h *Hub) authenticate(c *client, msg clientMessage) {
	g, err := h.checkAttempt(c, msg.Token)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.grant != nil {
		c.enqueueLocked(errorMessage(codeAlreadyAuthenticated, "session is already authenticated; send refresh to replace its token", ""), "")
		return
	}
	if err != nil {
		c.rejectTokenLocked(err)
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
// gets an error and close code 4001, or 4029 when the session's address has
// used up its failed attempts.
func (h *Hub) refresh(c *client, msg clientMessage) {
	g, err := h.checkAttempt(c, msg.Token)
	h.mu.Lock()
	defer h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.rejectTokenLocked(err)
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
