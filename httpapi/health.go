package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
)

// readyTimeout bounds one run of Options.Ready, so a stuck dependency makes
// /readyz slow for at most this long instead of hanging the probe.
const readyTimeout = 5 * time.Second

// Check is the result of one readiness check, as listed by GET /readyz.
type Check struct {
	// Name identifies the checked component, such as "database" or
	// "replication_slot".
	Name string `json:"name"`
	// OK is true when the component is ready.
	OK bool `json:"ok"`
	// Detail explains a failure. It is public, so it must not contain
	// secrets such as a database URL with a password.
	Detail string `json:"detail,omitempty"`
}

// healthz serves GET /healthz, a liveness probe: it succeeds whenever the
// process can serve HTTP at all.
func (a *api) healthz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(struct {
		Status string `json:"status"`
	}{"ok"})
}

// readyz serves GET /readyz: 200 with status "ready" when every check is
// OK, and 503 with status "unready" otherwise. The body also carries the
// instance's replication role when Options.Role is set.
func (a *api) readyz(c *fiber.Ctx) error {
	checks := []Check{}
	if a.ready != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
		defer cancel()
		if result := a.ready(ctx); result != nil {
			checks = result
		}
	}

	status, code := "ready", http.StatusOK
	for _, check := range checks {
		if !check.OK {
			status, code = "unready", http.StatusServiceUnavailable
			break
		}
	}
	var role string
	if a.role != nil {
		role = a.role()
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(code).JSON(struct {
		Status string  `json:"status"`
		Role   string  `json:"role,omitempty"`
		Checks []Check `json:"checks"`
	}{status, role, checks})
}
