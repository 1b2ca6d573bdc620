package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// apiError is an error response, written as
// {"error":{"code":…,"message":…,"field":…}}. Code is a stable snake_case
// identifier for programs. Message is a sentence for people that names the
// bad value, and Field names the request parameter at fault, if any.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Reason and ResumeFrom are set on resync_required errors only: why
	// events are missing, and the event id to read on after.
	Reason     string `json:"reason,omitempty"`
	ResumeFrom string `json:"resumeFrom,omitempty"`
	// emptyField marks an error about a body member whose name is the empty
	// string, so that field is "" rather than null.
	emptyField bool
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// maxQuotedLen is the maximum length of a request value repeated in an error
// message, so a huge parameter is not echoed back whole.
const maxQuotedLen = 80

// quote returns s as a Go-quoted string for an error message, cut to
// maxQuotedLen bytes.
func quote(s string) string {
	if len(s) > maxQuotedLen {
		return fmt.Sprintf("%q…", s[:maxQuotedLen])
	}
	return fmt.Sprintf("%q", s)
}

// marshalError encodes e in the error response shape. field is always
// present, null when no single parameter is at fault, and the encoder does
// not escape <, > and &, so messages read as JSON.stringify writes them.
func marshalError(e *apiError) []byte {
	var field *string
	if e.Field != "" || e.emptyField {
		field = &e.Field
	}
	type body struct {
		Code       string  `json:"code"`
		Message    string  `json:"message"`
		Field      *string `json:"field"`
		Reason     string  `json:"reason,omitempty"`
		ResumeFrom string  `json:"resumeFrom,omitempty"`
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		Error body `json:"error"`
	}{body{e.Code, e.Message, field, e.Reason, e.ResumeFrom}})
	if err != nil {
		// Encoding cannot fail, because every member is a string or a
		// string pointer.
		panic(fmt.Sprintf("httpapi: encoding error response: %v", err))
	}
	return []byte(strings.TrimSuffix(buf.String(), "\n"))
}

// writeHTTPError writes e on a net/http response, for requests rejected
// before they reach fiber.
func writeHTTPError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", fiber.MIMEApplicationJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = w.Write(marshalError(e))
}

// handleError is fiber's error handler. It turns every error a handler
// returns into the JSON error shape and logs the ones that are the server's
// fault.
func (a *api) handleError(c *fiber.Ctx, err error) error {
	apiErr := a.toAPIError(c, err)
	if apiErr.Status == http.StatusMethodNotAllowed {
		c.Set(fiber.HeaderAllow, strings.Join(a.allowedMethods(c.Path()), ", "))
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(apiErr.Status).Send(marshalError(apiErr))
}

func (a *api) toAPIError(c *fiber.Ctx, err error) *apiError {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var fiberErr *fiber.Error
	if errors.As(err, &fiberErr) && fiberErr.Code < 500 {
		return a.fromFiberError(c, fiberErr)
	}
	a.logger.ErrorContext(c.UserContext(), "request failed",
		"method", c.Method(), "path", c.Path(), "err", err)
	return errInternal()
}

// fromFiberError maps the client errors that fiber itself returns, mainly
// for requests that match no route.
func (a *api) fromFiberError(c *fiber.Ctx, err *fiber.Error) *apiError {
	switch err.Code {
	case http.StatusNotFound:
		return &apiError{
			Status:  http.StatusNotFound,
			Code:    "not_found",
			Message: fmt.Sprintf("no route %s %s; the API serves %s", c.Method(), quotePath(c.Path()), a.routeList()),
		}
	case http.StatusMethodNotAllowed:
		return &apiError{
			Status:  http.StatusMethodNotAllowed,
			Code:    "method_not_allowed",
			Message: fmt.Sprintf("method %s is not allowed on %s; use %s", c.Method(), quotePath(c.Path()), strings.Join(a.allowedMethods(c.Path()), " or ")),
		}
	case http.StatusRequestEntityTooLarge:
		return &apiError{
			Status:  http.StatusRequestEntityTooLarge,
			Code:    "payload_too_large",
			Message: "request body is larger than 1 MiB; send a smaller body",
		}
	default:
		code := strings.ReplaceAll(strings.ToLower(http.StatusText(err.Code)), " ", "_")
		return &apiError{Status: err.Code, Code: code, Message: err.Message}
	}
}

// allowedMethods returns the methods registered for path. A ":name"
// segment of a registered path, such as "/webhooks/:id", matches any one
// segment.
func (a *api) allowedMethods(path string) []string {
	if methods, ok := a.routes[path]; ok {
		return methods
	}
	// fiber matches "/webhooks/" to "/webhooks", because StrictRouting is off.
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	segments := strings.Split(path, "/")
	for _, route := range slices.Sorted(maps.Keys(a.routes)) {
		if matchSegments(strings.Split(route, "/"), segments) {
			return a.routes[route]
		}
	}
	return nil
}

// matchSegments reports whether the path segments match the route's, where
// a route segment starting with ":" matches any non-empty segment.
func matchSegments(route, path []string) bool {
	if len(route) != len(path) {
		return false
	}
	for i, segment := range route {
		if segment != path[i] && (!strings.HasPrefix(segment, ":") || path[i] == "") {
			return false
		}
	}
	return true
}

// quotePath returns a path for a message: as is when short and printable,
// quoted otherwise.
func quotePath(path string) string {
	q := quote(path)
	if q == `"`+path+`"` {
		return path
	}
	return q
}

// routeList names the routes for a 404 message, HEAD left out, such as
// "GET /events, GET /healthz, GET /readyz".
func (a *api) routeList() string {
	var list []string
	for _, path := range slices.Sorted(maps.Keys(a.routes)) {
		for _, method := range a.routes[path] {
			if method != fiber.MethodHead {
				list = append(list, method+" "+path)
			}
		}
	}
	return strings.Join(list, ", ")
}

// errInternal is the response for failures whose details belong in the log
// and not in front of the client.
func errInternal() *apiError {
	return &apiError{
		Status:  http.StatusInternalServerError,
		Code:    "internal_error",
		Message: "internal server error; the server log has the details",
	}
}

// recoverPanic turns a panic in a later handler into a logged 500 response,
// so one bad request cannot stop the server.
func (a *api) recoverPanic(c *fiber.Ctx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			a.logger.ErrorContext(c.UserContext(), "panic serving request",
				"method", c.Method(), "path", c.Path(), "panic", v, "stack", string(debug.Stack()))
			err = errInternal()
		}
	}()
	return c.Next()
}
