package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/civicbase/civicbase/delivery"
)

const (
	// maxURLLen is the maximum webhook URL length in bytes.
	maxURLLen = 2048
	// maxDescriptionLen is the maximum description length in characters.
	maxDescriptionLen = 1000
	// maxEventPatterns is the maximum number of patterns of one webhook.
	maxEventPatterns = 100
	// maxListedNames bounds how many model and semantic event names an
	// invalid_event message lists.
	maxListedNames = 10
)

// genericEvents are the event names that every captured change produces.
var genericEvents = []string{"data.created", "data.updated", "data.deleted", "data.truncated"}

// modelOperations are the suffixes of a model pattern such as "User.updated".
var modelOperations = []string{"created", "updated", "deleted", "truncated", "*"}

// bodyFields maps each member that a request body may contain to the JSON
// type it must have, phrased for error messages ("a string").
type bodyFields map[string]string

// names lists the members for a message, such as "a, b and c".
func (f bodyFields) names() string {
	return joinNames(slices.Sorted(maps.Keys(f)))
}

// decodeBody decodes a JSON object into dst. It rejects members missing
// from fields, which json.Unmarshal would ignore or match without regard to
// case, and null values, which would leave a field unset silently.
func decodeBody(body []byte, dst any, fields bodyFields) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_json",
			Message: "request body is empty; send a JSON object with " + fields.names(),
		}
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return jsonError(err)
	}
	if members == nil {
		return errNotObject("null")
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		want, ok := fields[name]
		if !ok {
			return &apiError{
				Status:     http.StatusBadRequest,
				Code:       "unknown_field",
				Field:      name,
				emptyField: name == "",
				Message:    fmt.Sprintf("unknown member %s; the accepted members are %s", quote(name), fields.names()),
			}
		}
		if bytes.Equal(bytes.TrimSpace(members[name]), []byte("null")) {
			return errInvalidType(name, want, "null")
		}
	}

	err := json.Unmarshal(body, dst)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		// Field is a path such as "events" for an element of events.
		name, _, _ := strings.Cut(typeErr.Field, ".")
		return errInvalidType(name, fields[name], typeErr.Value)
	}
	if err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError describes a body that is not a JSON object.
func jsonError(err error) *apiError {
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_json",
			Message: fmt.Sprintf("request body is not valid JSON: %s at byte %d", syntaxErr, syntaxErr.Offset),
		}
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return errNotObject(typeErr.Value)
	}
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "invalid_json",
		Message: "request body is not valid JSON: " + err.Error(),
	}
}

func errNotObject(got string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "invalid_json",
		Message: "request body must be a JSON object, not " + got,
	}
}

// errInvalidType reports a member whose JSON type is wrong. got is the JSON
// type found, such as "number" or "number 1.5".
func errInvalidType(name, want, got string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "invalid_type",
		Field:   name,
		Message: fmt.Sprintf("%s must be %s, not %s", name, want, got),
	}
}

func errMissingField(name, message string) *apiError {
	return &apiError{Status: http.StatusUnprocessableEntity, Code: "missing_field", Field: name, Message: message}
}

// checkURL checks a webhook URL with the guard: absolute, https unless
// development mode allows http, and not resolving to a private, loopback or
// link-local address. The guard resolves host names, so this can take as
// long as a DNS lookup.
func (a *api) checkURL(ctx context.Context, raw string) error {
	invalid := func(message string) error {
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_url", Field: "url", Message: message}
	}
	if raw == "" {
		return invalid("url is empty; send the endpoint's absolute https URL")
	}
	if len(raw) > maxURLLen {
		return invalid(fmt.Sprintf("url is %d bytes, more than the maximum of %d", len(raw), maxURLLen))
	}
	if err := a.hooks.guard.CheckURL(ctx, raw); err != nil {
		return invalid(fmt.Sprintf("url %s is rejected: %v", quote(withoutPassword(raw)), err))
	}
	return nil
}

// withoutPassword replaces the password of a URL with "xxxxx", so an error
// message never repeats a credential.
func withoutPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// checkEvents checks event patterns against the catalog and returns them
// without duplicates, in their first order.
func (a *api) checkEvents(ctx context.Context, patterns []string) ([]string, error) {
	invalid := func(message string) error {
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_event", Field: "events", Message: message}
	}
	if len(patterns) == 0 {
		return nil, invalid(`events is empty; list at least one event pattern, such as "*" or "data.created"`)
	}
	if len(patterns) > maxEventPatterns {
		return nil, invalid(fmt.Sprintf("events has %d patterns, more than the maximum of %d; use \"*\" or Model.* patterns to cover more",
			len(patterns), maxEventPatterns))
	}
	models, semantic, err := a.eventCatalog(ctx)
	if err != nil {
		return nil, err
	}

	unique := make([]string, 0, len(patterns))
	for _, pattern := range patterns {
		if problem := checkPattern(pattern, models, semantic); problem != "" {
			return nil, invalid(problem)
		}
		if !slices.Contains(unique, pattern) {
			unique = append(unique, pattern)
		}
	}
	return unique, nil
}

// eventCatalog returns the watched models and semantic event names, sorted.
func (a *api) eventCatalog(ctx context.Context) (models, semantic []string, err error) {
	if a.hooks.catalog == nil {
		return nil, nil, nil
	}
	models, semantic, err = a.hooks.catalog(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("loading the event catalog: %w", err)
	}
	return slices.Sorted(slices.Values(models)), slices.Sorted(slices.Values(semantic)), nil
}

// checkPattern returns why pattern matches no event, or "" when it is
// valid: "*", a generic event name, a semantic event name, or a watched
// model followed by an operation or "*".
func checkPattern(pattern string, models, semantic []string) string {
	if pattern == "*" || slices.Contains(genericEvents, pattern) || slices.Contains(semantic, pattern) {
		return ""
	}
	model, operation, found := strings.Cut(pattern, ".")
	if found && slices.Contains(models, model) {
		if slices.Contains(modelOperations, operation) {
			return ""
		}
		patterns := make([]string, len(modelOperations))
		for i, op := range modelOperations {
			patterns[i] = model + "." + op
		}
		return fmt.Sprintf("unknown event pattern %s: the patterns of model %s are %s",
			quote(pattern), model, joinNames(patterns))
	}

	message := fmt.Sprintf("unknown event pattern %s", quote(pattern))
	if i := slices.IndexFunc(models, func(m string) bool { return strings.EqualFold(m, model) }); found && i >= 0 {
		message += fmt.Sprintf(" (model names are case-sensitive: did you mean %s?)", models[i])
	}
	return message + ". Valid patterns are " + validPatterns(models, semantic)
}

// validPatterns describes the valid event patterns for a message, listing
// at most maxListedNames models and semantic names.
func validPatterns(models, semantic []string) string {
	parts := []string{`"*"`, "the generic events (" + strings.Join(genericEvents, ", ") + ")"}
	if len(models) == 0 {
		parts = append(parts, "no model patterns, because no models are watched")
	} else {
		parts = append(parts, "a watched model followed by .created, .updated, .deleted, .truncated or .* (watched models: "+
			listNames(models, maxListedNames)+")")
	}
	if len(semantic) > 0 {
		parts = append(parts, "the semantic events ("+listNames(semantic, maxListedNames)+")")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// listNames returns "a, b, c", listing at most limit names and counting the
// rest, as in "a, b and 3 more".
func listNames(names []string, limit int) string {
	if len(names) > limit {
		return strings.Join(names[:limit], ", ") + fmt.Sprintf(" and %d more", len(names)-limit)
	}
	return strings.Join(names, ", ")
}

// joinNames returns "a, b and c".
func joinNames(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func checkDescription(description string) error {
	invalid := func(message string) error {
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_description", Field: "description", Message: message}
	}
	if n := utf8.RuneCountInString(description); n > maxDescriptionLen {
		return invalid(fmt.Sprintf("description is %d characters, more than the maximum of %d", n, maxDescriptionLen))
	}
	if strings.ContainsRune(description, 0) {
		return invalid(`description contains a NUL character (\u0000), which Postgres text cannot store; remove it`)
	}
	return nil
}

// requestSecret parses the secret in a request, or generates one when the
// request has none (requested is nil). generated reports which. Errors
// never contain the secret.
func requestSecret(requested *string) (secret delivery.Secret, generated bool, err error) {
	if requested == nil {
		secret, err = delivery.GenerateSecret()
		if err != nil {
			return secret, true, fmt.Errorf("generating a webhook secret: %w", err)
		}
		return secret, true, nil
	}
	invalid := func(message string) error {
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_secret", Field: "secret", Message: message}
	}
	// A NUL byte cannot be stored in Postgres text, and other control
	// characters are easy to lose when a receiver copies the secret.
	if strings.ContainsFunc(*requested, unicode.IsControl) {
		return secret, false, invalid("secret contains a control character; use printable characters only, or omit the secret to have one generated")
	}
	secret, err = delivery.ParseSecret(*requested)
	if err != nil {
		return secret, false, invalid(err.Error())
	}
	return secret, false, nil
}

// pageSize returns the limit query parameter of the /webhooks listings.
func pageSize(c *fiber.Ctx) (int, error) {
	limit, err := singleQuery(c, "limit")
	if err != nil || limit == "" {
		return defaultWebhookPage, err
	}
	n, ok := parsePositive(limit)
	if !ok || n > maxWebhookPage {
		return 0, &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "limit",
			Message: fmt.Sprintf("limit %s is not an integer from 1 to %d", quote(limit), maxWebhookPage),
		}
	}
	return int(n), nil
}

// parsePositive parses a positive decimal integer. Only digits are
// accepted, so "+5", "1e3" and " 5" are not.
func parsePositive(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}
