package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/civicbase/civicbase/store"
)

// subscription is one subscribe of a session.
type subscription struct {
	id     string
	models map[string]bool
	events map[string]bool // stored event names; empty matches every event
	// modelNames and eventNames are echoed in the subscribed reply, with
	// event aliases normalized (delete becomes deleted).
	modelNames []string
	eventNames []string
	// from is the id after which events are delivered: since, or the
	// position at which the subscription went live.
	from string
	// filters pins columns of the rows this subscription sends, per model.
	// The session's filter claim applies on top of it.
	filters modelFilters
	// unsubscribed is set when an unsubscribe of the subscription arrives
	// during its replay. It then matches no event until the unsubscribe
	// removes it.
	unsubscribed bool
}

func (s *subscription) matches(e *store.Event, row *eventRow) bool {
	if s.unsubscribed || e.ID <= s.from || !s.models[e.Model] || (len(s.events) > 0 && !s.events[e.Event]) {
		return false
	}
	f := s.filters[e.Model]
	return f == nil || f.matches(row)
}

// eventAlias is an accepted name of a generic event.
type eventAlias struct {
	normalized string // echoed in the subscribed reply
	stored     string // the stored event name
}

var eventAliases = map[string]eventAlias{
	"created":   {"created", "data.created"},
	"create":    {"created", "data.created"},
	"updated":   {"updated", "data.updated"},
	"update":    {"updated", "data.updated"},
	"deleted":   {"deleted", "data.deleted"},
	"delete":    {"deleted", "data.deleted"},
	"truncated": {"truncated", "data.truncated"},
	"truncate":  {"truncated", "data.truncated"},
}

var eventIDPattern = regexp.MustCompile(`^evt_[0-9a-f]{26}$`)

// catalogTimeout bounds one call of Config.Catalog.
const catalogTimeout = 5 * time.Second

// subscriptionError is a rejected subscribe, sent as an error message.
type subscriptionError struct{ code, message string }

// parseSubscription checks a subscribe message against the catalog and the
// session's grant. It does not check the session's subscription count.
func (h *Hub) parseSubscription(g *grant, msg clientMessage) (*subscription, *subscriptionError) {
	switch {
	case msg.ID == "":
		return nil, &subscriptionError{codeInvalidSubscription, "subscribe needs an id, which the server echoes in its replies"}
	case len(msg.ID) > maxSubscriptionIDBytes:
		return nil, &subscriptionError{codeInvalidSubscription,
			fmt.Sprintf("subscription id is %d bytes; use at most %d", len(msg.ID), maxSubscriptionIDBytes)}
	case len(msg.Models) == 0:
		return nil, &subscriptionError{codeInvalidSubscription, "subscribe needs at least one model in models"}
	case msg.Since != "" && !eventIDPattern.MatchString(msg.Since):
		return nil, &subscriptionError{codeInvalidSince, fmt.Sprintf("since %q is not an event id (evt_ and 26 lowercase hex digits)", msg.Since)}
	}
	models, semantic, err := h.catalog()
	if err != nil {
		h.log.Error("reading catalog failed", "err", err)
		return nil, &subscriptionError{codeUnavailable, "reading the model catalog failed; retry later"}
	}

	sub := &subscription{id: msg.ID, models: make(map[string]bool), events: make(map[string]bool)}
	if subErr := sub.addModels(msg.Models, models, g); subErr != nil {
		return nil, subErr
	}
	if subErr := sub.addEvents(msg.Events, semantic); subErr != nil {
		return nil, subErr
	}
	if subErr := sub.addFilters(msg.Filter, g); subErr != nil {
		return nil, subErr
	}
	return sub, nil
}

// catalog returns the known models and semantic events as sets, both nil
// when Config.Catalog is nil.
func (h *Hub) catalog() (models, semantic map[string]bool, err error) {
	if h.cfg.Catalog == nil {
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), catalogTimeout)
	defer cancel()
	modelList, semanticList, err := h.cfg.Catalog(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("reading catalog: %w", err)
	}
	return toSet(modelList), toSet(semanticList), nil
}

func toSet(values []string) map[string]bool {
	set := make(map[string]bool, len(values))
	for _, v := range values {
		set[v] = true
	}
	return set
}

func (s *subscription) addModels(names []string, known map[string]bool, g *grant) *subscriptionError {
	var unknown, forbidden []string
	for _, m := range names {
		switch {
		case known != nil && !known[m]:
			unknown = append(unknown, m)
		case !g.allows(m):
			forbidden = append(forbidden, m)
		case !s.models[m]:
			s.models[m] = true
			s.modelNames = append(s.modelNames, m)
		}
	}
	if len(unknown) > 0 {
		return &subscriptionError{codeUnknownModel, "unknown models: " + quoteList(unknown)}
	}
	if len(forbidden) > 0 {
		return &subscriptionError{codeForbiddenModel, "token may not see models: " + quoteList(forbidden)}
	}
	return nil
}

// addFilters sets the subscription's filter. Each model it names must be
// one of the subscription's models, and no pinned value may differ from
// the one the session's filter claim pins.
func (s *subscription) addFilters(raw map[string]map[string]json.RawMessage, g *grant) *subscriptionError {
	filters, err := parseModelFilters(raw)
	if err != nil {
		return &subscriptionError{codeInvalidFilter, err.Error()}
	}
	for _, model := range slices.Sorted(maps.Keys(filters)) {
		if !s.models[model] {
			return &subscriptionError{codeInvalidFilter,
				fmt.Sprintf("filter names model %q, which is not in the subscription's models", model)}
		}
	}
	s.filters = filters
	return s.checkFilterClaim(g)
}

// checkGrant reports why g does not allow the subscription, or nil when it
// does. refresh removes the subscriptions that a new token does not allow.
func (s *subscription) checkGrant(g *grant) *subscriptionError {
	var forbidden []string
	for _, m := range s.modelNames {
		if !g.allows(m) {
			forbidden = append(forbidden, m)
		}
	}
	if len(forbidden) > 0 {
		return &subscriptionError{codeForbiddenModel, "token may not see models: " + quoteList(forbidden)}
	}
	return s.checkFilterClaim(g)
}

// checkFilterClaim rejects a subscription filter that pins a column to a
// value other than the one g's filter claim pins, because no row could
// match both.
func (s *subscription) checkFilterClaim(g *grant) *subscriptionError {
	for _, model := range slices.Sorted(maps.Keys(s.filters)) {
		if column := s.filters[model].contradiction(g.filters[model]); column != "" {
			return &subscriptionError{codeForbiddenFilter, fmt.Sprintf(
				"filter pins column %q of model %q to %s, but the token pins it to %s",
				column, model, s.filters[model][column].raw, g.filters[model][column].raw)}
		}
	}
	return nil
}

// addEvents accepts generic event aliases and, when the catalog is known,
// the semantic events it names. An empty list matches every event.
func (s *subscription) addEvents(names []string, semantic map[string]bool) *subscriptionError {
	var unknown []string
	s.eventNames = []string{}
	for _, name := range names {
		alias, ok := eventAliases[name]
		switch {
		case ok:
		case semantic == nil || semantic[name]:
			alias = eventAlias{normalized: name, stored: name}
		default:
			unknown = append(unknown, name)
			continue
		}
		if !s.events[alias.stored] {
			s.events[alias.stored] = true
			s.eventNames = append(s.eventNames, alias.normalized)
		}
	}
	if len(unknown) > 0 {
		return &subscriptionError{codeUnknownEvent, "unknown events: " + quoteList(unknown) +
			"; expected created, updated, deleted, truncated or a configured semantic event"}
	}
	return nil
}

// indexLocked adds sub's models to the index. h.mu must be held.
func (h *Hub) indexLocked(c *client, sub *subscription) {
	for m := range sub.models {
		sessions := h.index[m]
		if sessions == nil {
			sessions = make(map[*client]int)
			h.index[m] = sessions
		}
		sessions[c]++
	}
}

// unindexLocked removes sub's models from the index. h.mu must be held.
func (h *Hub) unindexLocked(c *client, sub *subscription) {
	for m := range sub.models {
		sessions := h.index[m]
		sessions[c]--
		if sessions[c] <= 0 {
			delete(sessions, c)
		}
		if len(sessions) == 0 {
			delete(h.index, m)
		}
	}
}
