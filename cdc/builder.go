package cdc

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/store"
)

// Generic event names.
const (
	EventCreated   = "data.created"
	EventUpdated   = "data.updated"
	EventDeleted   = "data.deleted"
	EventTruncated = "data.truncated"
)

// txn is the source transaction being decoded.
type txn struct {
	commitLSN  pglogrepl.LSN
	commitTime time.Time
	xid        uint32
	seq        uint32 // changes seen so far, the next change's position
}

// EventID returns the id of the event with the given ordinal (0 for the
// generic event, 1… for semantic events in configuration order) of the
// seq-th change of the transaction that commits at commitLSN. Fixed-width
// hex makes byte order equal commit order, and a replay of the same
// transaction yields the same ids.
func EventID(commitLSN pglogrepl.LSN, seq uint32, ordinal uint8) string {
	var raw [13]byte
	for i := range 8 {
		raw[i] = byte(commitLSN >> (56 - 8*i))
	}
	raw[8], raw[9], raw[10], raw[11] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	raw[12] = ordinal
	return "evt_" + hex.EncodeToString(raw[:])
}

// change is one decoded row change, before it becomes events.
type change struct {
	rel         *relation
	op          string // insert, update, delete or truncate
	changes     canon.Object
	old         canon.Object
	hasOld      bool
	unavailable []string
	inexact     bool // an update without the old row: changes lists every column
	instanceID  *string
	changedCols []string
}

// builder turns decoded changes into store events. It is not safe for
// concurrent use; the Reader owns one.
type builder struct {
	buf  []byte // payload scratch
	vals []byte // column values of the current change
	log  *slog.Logger
	// warned limits fallback warnings to one per column per warnEvery.
	warned map[string]time.Time
}

// warnEvery is how often the same column's mapping failure is logged.
const warnEvery = time.Minute

// warnFallback logs that a value was sent as its Postgres text form.
func (b *builder) warnFallback(col column, err error) {
	if b.warned == nil {
		b.warned = map[string]time.Time{}
	}
	if time.Since(b.warned[col.name]) < warnEvery {
		return
	}
	b.warned[col.name] = time.Now()
	if b.log != nil {
		b.log.Warn("value could not be mapped to JSON; sending its Postgres text form as a string",
			"column", col.name, "type", col.typ.Name, "err", err)
	}
}

func (b *builder) insert(rel *relation, tuple []tupleColumn) (*change, error) {
	c := &change{rel: rel, op: "insert"}
	if err := b.addColumns(c, tuple, &c.changes); err != nil {
		return nil, err
	}
	c.instanceID = instanceID(rel, tuple)
	return c, nil
}

// addColumns adds every column of tuple to obj. A column whose value the
// stream did not carry goes to c.unavailable instead.
func (b *builder) addColumns(c *change, tuple []tupleColumn, obj *canon.Object) error {
	for i, col := range tuple {
		if i >= len(c.rel.columns) {
			break
		}
		raw, known, err := b.value(c.rel.columns[i], col)
		if err != nil {
			return err
		}
		if !known {
			c.unavailable = append(c.unavailable, c.rel.columns[i].name)
			continue
		}
		obj.Add(c.rel.columns[i].name, raw)
	}
	return nil
}

func (b *builder) update(rel *relation, msg *rowChange) (*change, error) {
	c := &change{rel: rel, op: "update"}
	if msg.oldKind != 'O' {
		return b.updateWithoutOld(rel, msg, c)
	}
	c.hasOld = true
	for i, newCol := range msg.new {
		if i >= len(rel.columns) || i >= len(msg.old) {
			break
		}
		col, oldCol := rel.columns[i], msg.old[i]
		if newCol.kind == kindToast || sameValue(oldCol, newCol) {
			continue // unchanged; an unchanged TOAST value is never sent
		}
		raw, _, err := b.value(col, newCol)
		if err != nil {
			return nil, err
		}
		c.changes.Add(col.name, raw)
		c.changedCols = append(c.changedCols, col.name)
		if oldCol.kind == kindToast {
			c.unavailable = append(c.unavailable, col.name)
			continue
		}
		oldRaw, _, err := b.value(col, oldCol)
		if err != nil {
			return nil, err
		}
		c.old.Add(col.name, oldRaw)
	}
	c.instanceID = instanceID(rel, msg.new)
	return c, nil
}

// updateWithoutOld handles tables without REPLICA IDENTITY FULL: the old row
// is unknown, so every column of the new row is reported, and the old key
// when the key changed.
func (b *builder) updateWithoutOld(rel *relation, msg *rowChange, c *change) (*change, error) {
	c.inexact = true
	if err := b.addColumns(c, msg.new, &c.changes); err != nil {
		return nil, err
	}
	if msg.oldKind == 'K' {
		if err := b.keyColumns(rel, msg.old, &c.old); err != nil {
			return nil, err
		}
		c.hasOld = true
	}
	c.instanceID = instanceID(rel, msg.new)
	return c, nil
}

func (b *builder) delete(rel *relation, msg *rowChange) (*change, error) {
	c := &change{rel: rel, op: "delete", hasOld: true}
	if msg.oldKind == 'K' {
		if err := b.keyColumns(rel, msg.old, &c.old); err != nil {
			return nil, err
		}
	} else if err := b.addColumns(c, msg.old, &c.old); err != nil {
		return nil, err
	}
	c.instanceID = instanceID(rel, msg.old)
	return c, nil
}

// keyColumns adds the replica identity key columns of tuple to obj; the
// other columns of a key tuple are sent as null and mean nothing.
func (b *builder) keyColumns(rel *relation, tuple []tupleColumn, obj *canon.Object) error {
	for i, col := range tuple {
		if i >= len(rel.columns) || !rel.columns[i].identity {
			continue
		}
		raw, known, err := b.value(rel.columns[i], col)
		if err != nil {
			return err
		}
		if known {
			obj.Add(rel.columns[i].name, raw)
		}
	}
	return nil
}

// value returns the JSON of one column value, or known=false for an
// unchanged TOAST value whose content the stream did not carry.
func (b *builder) value(col column, data tupleColumn) (raw []byte, known bool, err error) {
	switch data.kind {
	case kindNull:
		return []byte("null"), true, nil
	case kindToast:
		return nil, false, nil
	case kindText:
		// Values share one buffer per change. A slice taken before the
		// buffer grows keeps pointing at the old array, which stays valid.
		start := len(b.vals)
		b.vals, err = col.typ.AppendJSON(b.vals, data.data)
		if err != nil {
			// One value that cannot be mapped must not stop the stream, or
			// every later change would wait behind it. Its text form keeps
			// the data.
			b.vals = canon.AppendStringBytes(b.vals[:start], data.data)
			b.warnFallback(col, err)
		}
		return b.vals[start:len(b.vals):len(b.vals)], true, nil
	}
	return nil, false, fmt.Errorf("column %s arrived in format %q; only text format is supported", col.name, data.kind)
}

func sameValue(a, b tupleColumn) bool {
	return a.kind == b.kind && bytes.Equal(a.data, b.data)
}

// instanceID joins the key columns' text values. A composite key joins its
// parts with "," after escaping "\" and "," in each part with a backslash.
// It returns nil when the table has no key or a key value is missing.
func instanceID(rel *relation, tuple []tupleColumn) *string {
	if len(rel.key) == 0 {
		return nil
	}
	if len(rel.key) == 1 {
		i := rel.key[0]
		if i >= len(tuple) || tuple[i].kind != kindText {
			return nil
		}
		id := string(tuple[i].data)
		return &id
	}
	parts := make([]string, 0, len(rel.key))
	for _, i := range rel.key {
		if i >= len(tuple) || tuple[i].kind != kindText {
			return nil
		}
		part := string(tuple[i].data)
		if len(rel.key) > 1 {
			part = strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(part)
		}
		parts = append(parts, part)
	}
	id := strings.Join(parts, ",")
	return &id
}

// events returns the generic event of c and the semantic events it matches.
func (b *builder) events(c *change, t *txn) []store.Event {
	seq := t.seq
	t.seq++
	out := []store.Event{b.event(c, t, seq, 0, genericEvent(c.op))}
	for i, se := range c.rel.events {
		if se.On != c.op || i >= 254 {
			continue
		}
		// Without the old row (changesExact false) any column may have
		// changed, so a column-limited event fires on every update rather
		// than risk missing one.
		if c.op == "update" && !c.inexact && len(se.Columns) > 0 && !slices.ContainsFunc(se.Columns, func(col string) bool {
			return slices.Contains(c.changedCols, col)
		}) {
			continue
		}
		out = append(out, b.event(c, t, seq, uint8(i+1), se.Name))
	}
	return out
}

func (b *builder) event(c *change, t *txn, seq uint32, ordinal uint8, name string) store.Event {
	e := store.Event{
		ID: EventID(t.commitLSN, seq, ordinal), Event: name, Model: c.rel.model, Table: c.rel.table,
		InstanceID: c.instanceID, CommitLSN: t.commitLSN, CommitTime: t.commitTime, Txid: t.xid,
	}
	e.Payload = b.payload(c, &e)
	return e
}

// payload writes the event's JSON in the contract's member order.
func (b *builder) payload(c *change, e *store.Event) []byte {
	p := b.buf[:0]
	p = append(p, `{"id":`...)
	p = canon.AppendString(p, e.ID)
	p = append(p, `,"event":`...)
	p = canon.AppendString(p, e.Event)
	p = append(p, `,"model":`...)
	p = canon.AppendString(p, e.Model)
	p = append(p, `,"table":`...)
	p = canon.AppendString(p, e.Table)
	p = append(p, `,"instanceId":`...)
	if e.InstanceID == nil {
		p = append(p, "null"...)
	} else {
		p = canon.AppendString(p, *e.InstanceID)
	}

	p = append(p, `,"changes":`...)
	p = c.changes.AppendTo(p)
	if c.hasOld {
		p = append(p, `,"old":`...)
		p = c.old.AppendTo(p)
	}
	if c.inexact {
		p = append(p, `,"changesExact":false`...)
	}
	if len(c.unavailable) > 0 {
		p = append(p, `,"unavailable":[`...)
		for i, name := range c.unavailable {
			if i > 0 {
				p = append(p, ',')
			}
			p = canon.AppendString(p, name)
		}
		p = append(p, ']')
	}

	p = append(p, `,"timestamp":`...)
	p = strconv.AppendInt(p, e.CommitTime.Unix(), 10)
	p = append(p, `,"commitTime":"`...)
	p = e.CommitTime.UTC().AppendFormat(p, "2006-01-02T15:04:05.000000Z")
	p = append(p, `","lsn":"`...)
	p = append(p, e.CommitLSN.String()...)
	p = append(p, `","txid":`...)
	p = strconv.AppendUint(p, uint64(e.Txid), 10)
	p = append(p, '}')
	b.buf = p
	return slices.Clone(p)
}

func genericEvent(op string) string {
	switch op {
	case "insert":
		return EventCreated
	case "update":
		return EventUpdated
	case "delete":
		return EventDeleted
	}
	return EventTruncated
}

// truncateChange returns the change for one truncated relation.
func truncateChange(rel *relation) *change {
	return &change{rel: rel, op: "truncate"}
}
