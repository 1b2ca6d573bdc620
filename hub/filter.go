package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/store"
)

// maxSafeInteger is the largest integer that a float64 holds exactly. The
// event builder writes integers beyond it as strings.
const maxSafeInteger = 1<<53 - 1

// filterValue is the value a filter pins a column to: a JSON string, number
// or boolean.
type filterValue struct {
	raw     []byte // canonical JSON, echoed in the subscribed reply
	kind    byte   // 's' string, 'n' number, 'b' boolean
	str     string
	number  int64
	boolean bool
}

// parseFilterValue accepts a JSON string, a boolean, or an integer within
// ±(2^53-1). Integers past that range appear in events as strings, so they
// are pinned with a string.
func parseFilterValue(raw json.RawMessage) (filterValue, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return filterValue{}, errors.New("missing value")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return filterValue{}, fmt.Errorf("invalid string: %w", err)
		}
		return filterValue{raw: canon.AppendString(nil, s), kind: 's', str: s}, nil
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return filterValue{}, fmt.Errorf("invalid boolean: %w", err)
		}
		return filterValue{raw: strconv.AppendBool(nil, b), kind: 'b', boolean: b}, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n > maxSafeInteger || n < -maxSafeInteger {
		return filterValue{}, fmt.Errorf("%s is not a string, a boolean or an integer within ±(2^53-1)", raw)
	}
	return filterValue{raw: strconv.AppendInt(nil, n, 10), kind: 'n', number: n}, nil
}

// matches reports whether the JSON value of a row's column equals v. The
// JSON types must agree: the string "1" does not match the number 1. A
// number matches when it equals v exactly, so 1.0 matches 1.
func (v filterValue) matches(column json.RawMessage) bool {
	column = bytes.TrimSpace(column)
	if len(column) == 0 {
		return false
	}
	switch column[0] {
	case '"':
		var s string
		return v.kind == 's' && json.Unmarshal(column, &s) == nil && s == v.str
	case 't', 'f':
		var b bool
		return v.kind == 'b' && json.Unmarshal(column, &b) == nil && b == v.boolean
	case 'n', '{', '[':
		return false
	}
	if v.kind != 'n' {
		return false
	}
	// v is within ±(2^53-1), so float64(v.number) is exact. The event
	// builder writes integers exactly and floats in their shortest form, so
	// a column value equal to it as a float64 is that integer.
	f, err := strconv.ParseFloat(string(column), 64)
	return err == nil && f == float64(v.number)
}

// filter pins columns of a model's rows to values: column → value.
type filter map[string]filterValue

// modelFilters is a filter per model: model → column → value.
type modelFilters map[string]filter

// parseModelFilters parses the filter of a JWT claim or of a subscribe
// message. It rejects an empty column name and values that are not scalars.
func parseModelFilters(raw map[string]map[string]json.RawMessage) (modelFilters, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	filters := make(modelFilters, len(raw))
	for _, model := range slices.Sorted(maps.Keys(raw)) {
		columns := raw[model]
		if len(columns) == 0 {
			continue
		}
		f := make(filter, len(columns))
		for _, column := range slices.Sorted(maps.Keys(columns)) {
			if column == "" {
				return nil, fmt.Errorf("filter of model %q has an empty column name", model)
			}
			v, err := parseFilterValue(columns[column])
			if err != nil {
				return nil, fmt.Errorf("filter of model %q, column %q: %w", model, column, err)
			}
			f[column] = v
		}
		filters[model] = f
	}
	return filters, nil
}

// contradiction returns the first column, in name order, that f and pinned
// both set to different values, or "" when there is none.
func (f filter) contradiction(pinned filter) string {
	for _, column := range slices.Sorted(maps.Keys(f)) {
		if p, ok := pinned[column]; ok && !bytes.Equal(p.raw, f[column].raw) {
			return column
		}
	}
	return ""
}

// appendJSON appends filters as a JSON object with its keys in name order.
func (filters modelFilters) appendJSON(b []byte) []byte {
	var models canon.Object
	for _, model := range slices.Sorted(maps.Keys(filters)) {
		var columns canon.Object
		for _, column := range slices.Sorted(maps.Keys(filters[model])) {
			columns.Add(column, filters[model][column].raw)
		}
		models.Add(model, columns.AppendTo(nil))
	}
	return models.AppendTo(b)
}

// eventRow looks up the column values of an event's row. It decodes the
// payload on the first lookup, so events that no filter inspects are never
// decoded.
type eventRow struct {
	event   *store.Event
	decoded bool
	changes map[string]json.RawMessage
	old     map[string]json.RawMessage
	// withoutOld is the event's message without old, built on first use.
	withoutOld []byte
}

func newEventRow(e *store.Event) *eventRow { return &eventRow{event: e} }

// column returns the value of a row's column: its value in changes, else
// in old. An update under REPLICA IDENTITY FULL carries only the changed
// columns in both, so a column the update did not touch is unknown here.
// A delete carries the row in old, but only its key columns when the table
// is not REPLICA IDENTITY FULL.
func (r *eventRow) column(name string) (json.RawMessage, bool) {
	r.decode()
	if v, ok := r.changes[name]; ok {
		return v, true
	}
	v, ok := r.old[name]
	return v, ok
}

// decode fills changes and old from the event's payload on first use.
func (r *eventRow) decode() {
	if !r.decoded {
		r.decoded = true
		var p struct {
			Changes map[string]json.RawMessage `json:"changes"`
			Old     map[string]json.RawMessage `json:"old"`
		}
		// A payload that does not decode leaves both maps nil, so the row
		// matches no filter and filtered sessions do not get it.
		if json.Unmarshal(r.event.Payload, &p) == nil {
			r.changes, r.old = p.Changes, p.Old
		}
	}
}

// matches reports whether the row has every pinned column at its pinned
// value. A pinned column whose value the event does not carry fails, so a
// filtered session never receives a row it cannot prove is its own.
func (f filter) matches(r *eventRow) bool {
	for column, want := range f {
		got, ok := r.column(column)
		if !ok || !want.matches(got) {
			return false
		}
	}
	return true
}

// movedFrom reports whether the row's old values pin a column of f to
// another value: the row belonged to someone else before this change, such
// as a project handed from one owner to another.
func (f filter) movedFrom(r *eventRow) bool {
	r.decode()
	for column, want := range f {
		if got, ok := r.old[column]; ok && !want.matches(got) {
			return true
		}
	}
	return false
}

// messageFor returns the message of the row's event for a session with
// grant g: msg, or msg without old when old holds another owner's values
// under g's filter claim, so a session never receives the previous owner's data.
func (r *eventRow) messageFor(g *grant, msg []byte) []byte {
	if g == nil {
		return msg
	}
	f := g.filters[r.event.Model]
	if f == nil || !f.movedFrom(r) {
		return msg
	}
	if r.withoutOld == nil {
		var err error
		if r.withoutOld, err = buildEventMessage(*r.event, false); err != nil {
			return msg // the payload decoded for msg, so this does not happen
		}
	}
	return r.withoutOld
}
