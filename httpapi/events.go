package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/civicbase/civicbase/store"
)

const (
	// defaultLimit is the page size of GET /events without a limit.
	defaultLimit = 100
	// maxLimit caps the page size, which bounds the memory one response
	// takes to maxLimit payloads.
	maxLimit = 1000
	// listTimeout bounds the store query behind one page. fiber v2.52's
	// net/http adaptor does not pass the request context on, so a client that
	// disconnects does not cancel the query, and this timeout ends it instead.
	listTimeout = 10 * time.Second
)

// eventIDPattern matches the event ids accepted as a cursor. Ids are opaque
// to clients, but all of them are "evt_" plus 26 lowercase hex digits, and
// they are compared as strings: a shorter one such as evt_2 would sort
// after most real ids and skip the events before it.
var eventIDPattern = regexp.MustCompile(`^evt_[0-9a-f]{26}$`)

// eventsPage is the query of GET /events.
type eventsPage struct {
	after string
	limit int
}

// listEvents serves GET /events?after=<id>&limit=<n>: stored events with
// ids greater than after, oldest first. The payloads are the stored bytes,
// spliced in unchanged, so they stay identical to what webhooks sign.
func (a *api) listEvents(c *fiber.Ctx) error {
	if err := onlyQuery(c, "after", "limit"); err != nil {
		return err
	}
	page, err := parseEventsPage(c)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(c.UserContext(), listTimeout)
	defer cancel()
	events, err := a.events.List(ctx, page.after, page.limit+1)
	if err != nil {
		return fmt.Errorf("listing events after %q: %w", page.after, err)
	}
	// Gaps are read after the events, so a gap whose later events are on
	// the page is among them.
	gaps, err := a.events.GapsAfter(ctx, page.after)
	if err != nil {
		return fmt.Errorf("listing events after %q: %w", page.after, err)
	}
	if page.after != "" && len(gaps) > 0 {
		gap := gaps[len(gaps)-1]
		return errResyncRequired("after", gap, gap.Message("events after "+page.after)+
			"; reload your state and continue with after="+gap.ResumeFrom)
	}
	if page.after != "" && len(events) == 0 {
		if err := checkCursorKnown(ctx, a.events, page.after); err != nil {
			return err
		}
	}
	hasMore := len(events) > page.limit
	if hasMore {
		events = events[:page.limit]
	}
	if cut := cutAtGap(events, gaps); cut < len(events) {
		events, hasMore = events[:cut], true
	}

	body, err := encodeEventsPage(events, page.after, hasMore)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}

// checkCursorKnown rejects an after newer than every event this database
// stored. Such a cursor comes from another database, such as one restored
// from a backup, and paging from it would return nothing until this
// database's ids pass it.
func checkCursorKnown(ctx context.Context, events EventSource, after string) error {
	newest, err := events.NewestKnownID(ctx)
	if err != nil {
		return fmt.Errorf("reading the newest event id: %w", err)
	}
	if after <= newest {
		return nil
	}
	return &apiError{
		Status: http.StatusConflict,
		Code:   "unknown_cursor",
		Field:  "after",
		Message: fmt.Sprintf("after %s is newer than every event stored here (newest %q), so it comes from another database, "+
			"such as one restored or recreated; reload your state and page again without after", quote(after), newest),
	}
}

// parseEventsPage validates the after and limit query parameters.
func parseEventsPage(c *fiber.Ctx) (eventsPage, error) {
	page := eventsPage{limit: defaultLimit}

	after, err := singleQuery(c, "after")
	if err != nil {
		return page, err
	}
	if after != "" && !eventIDPattern.MatchString(after) {
		return page, &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "after",
			Message: fmt.Sprintf(`after %s is not an event id; use "evt_" plus 26 lowercase hex digits, such as the "next" value of the previous page`, quote(after)),
		}
	}
	page.after = after

	limit, err := singleQuery(c, "limit")
	if err != nil || limit == "" {
		return page, err
	}
	page.limit, err = parseLimit(limit)
	if err != nil {
		return page, &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   "limit",
			Message: fmt.Sprintf("limit %s is not an integer from 1 to %d", quote(limit), maxLimit),
		}
	}
	return page, nil
}

// parseLimit accepts decimal digits only, so "+5", "1e3" and " 5" are
// rejected along with values out of range.
func parseLimit(s string) (int, error) {
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("parsing limit: %q is not a decimal number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("parsing limit: %w", err)
	}
	if n < 1 || n > maxLimit {
		return 0, fmt.Errorf("parsing limit: %d is out of range", n)
	}
	return n, nil
}

// singleQuery returns the query parameter name, or "" when it is absent. A
// parameter given more than once is rejected, because either choice of
// value would surprise some client.
// onlyQuery rejects a query parameter other than names, so that a
// misspelt or misplaced one, such as after on a list that pages with
// before, is not silently ignored while the client pages in a loop.
func onlyQuery(c *fiber.Ctx, names ...string) error {
	var unknown string
	c.Context().QueryArgs().VisitAll(func(key, _ []byte) {
		if unknown == "" && !slices.Contains(names, string(key)) {
			unknown = string(key)
		}
	})
	if unknown == "" {
		return nil
	}
	field := unknown
	if len(field) > maxQuotedLen {
		field = ""
	}
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "unknown_parameter",
		Field:   field,
		Message: fmt.Sprintf("unknown query parameter %s; %s %s takes %s", quote(unknown), c.Method(), c.Route().Path, strings.Join(names, ", ")),
	}
}

func singleQuery(c *fiber.Ctx, name string) (string, error) {
	values := c.Context().QueryArgs().PeekMulti(name)
	switch len(values) {
	case 0:
		return "", nil
	case 1:
		return string(values[0]), nil
	default:
		return "", &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_parameter",
			Field:   name,
			Message: fmt.Sprintf("%s is given %d times; send it at most once", name, len(values)),
		}
	}
}

// cutAtGap returns how many of events precede the first gap that falls
// between two of them, or len(events) when none does. A page read without
// a cursor ends there, so the reader's next request, after the last event
// before the gap, gets resync_required.
func cutAtGap(events []store.Event, gaps []store.Gap) int {
	for _, gap := range gaps {
		if len(events) == 0 || gap.ResumeFrom < events[0].ID {
			continue
		}
		for i, e := range events {
			if e.ID > gap.ResumeFrom {
				return i
			}
		}
		break
	}
	return len(events)
}

// errResyncRequired is the 410 response to a request that would read across
// gap, whose events may be missing. Reading on after gap.ResumeFrom is
// complete.
func errResyncRequired(field string, gap store.Gap, message string) *apiError {
	return &apiError{
		Status:     http.StatusGone,
		Code:       "resync_required",
		Field:      field,
		Message:    message,
		Reason:     gap.Reason,
		ResumeFrom: gap.ResumeFrom,
	}
}

// encodeEventsPage writes {"events":[…],"next":…,"hasMore":…}. next is the
// last id on the page, or after when the page is empty.
func encodeEventsPage(events []store.Event, after string, hasMore bool) ([]byte, error) {
	next := after
	if len(events) > 0 {
		next = events[len(events)-1].ID
	}

	var buf bytes.Buffer
	buf.WriteString(`{"events":[`)
	for i, e := range events {
		// A payload that is not valid JSON would break the whole response,
		// so it fails the request instead.
		if !json.Valid(e.Payload) {
			return nil, fmt.Errorf("encoding events page: payload of event %s is not valid JSON", e.ID)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.Payload)
	}
	buf.WriteString(`],"next":`)
	nextJSON, err := json.Marshal(next)
	if err != nil {
		return nil, fmt.Errorf("encoding next cursor: %w", err)
	}
	buf.Write(nextJSON)
	buf.WriteString(`,"hasMore":`)
	buf.WriteString(strconv.FormatBool(hasMore))
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
