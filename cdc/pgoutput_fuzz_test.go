package cdc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/canon"
	"github.com/civicbase/civicbase/config"
)

// The seeds in testdata/fuzz/FuzzDecodeRowChange and FuzzParseMessage are
// pgoutput messages (protocol version 1) that PostgreSQL 15 wrote for
// inserts, updates, deletes and a truncate on two tables with the columns of
// fuzzRelation, one with REPLICA IDENTITY FULL and one with DEFAULT, read
// with pg_logical_slot_get_binary_changes. They include NULLs, unchanged
// TOAST values, arrays with lower bounds and integer-like JSON keys.

// fuzzRelation returns a relation with the columns of the seed tables: id
// int4 (the key), name text, flag bool, score float8, big int8, amount
// numeric, doc jsonb, raw bytea, at timestamptz, tags text[], nums int4[],
// born date and note text, plus a column-limited semantic event.
func fuzzRelation() *relation {
	oids := []struct {
		name string
		oid  uint32
	}{
		{"id", pgtype.Int4OID}, {"name", pgtype.TextOID}, {"flag", pgtype.BoolOID}, {"score", pgtype.Float8OID},
		{"big", pgtype.Int8OID}, {"amount", pgtype.NumericOID}, {"doc", pgtype.JSONBOID}, {"raw", pgtype.ByteaOID},
		{"at", pgtype.TimestamptzOID}, {"tags", pgtype.TextArrayOID}, {"nums", pgtype.Int4ArrayOID},
		{"born", pgtype.DateOID}, {"note", pgtype.TextOID},
	}
	rel := &relation{id: 16384, table: "public.fz", model: "Fz", identity: 'f', key: []int{0}, events: []config.SemanticEvent{
		{Name: "fz.renamed", On: "update", Columns: []string{"name"}},
		{Name: "fz.removed", On: "delete"},
	}}
	for i, c := range oids {
		rel.columns = append(rel.columns, column{name: c.name, typ: builtinTypes[c.oid], identity: i == 0})
	}
	return rel
}

// encodeRowChange writes rc in pgoutput's format, the inverse of
// decodeRowChange.
func encodeRowChange(rc *rowChange) []byte {
	out := []byte{rc.op}
	out = binary.BigEndian.AppendUint32(out, rc.relationID)
	if rc.oldKind != 0 {
		out = append(out, rc.oldKind)
		out = encodeTuple(out, rc.old)
	}
	if rc.op != 'D' {
		out = append(out, 'N')
		out = encodeTuple(out, rc.new)
	}
	return out
}

func encodeTuple(out []byte, cols []tupleColumn) []byte {
	out = binary.BigEndian.AppendUint16(out, uint16(len(cols)))
	for _, c := range cols {
		out = append(out, c.kind)
		if c.kind == kindText || c.kind == 'b' {
			out = binary.BigEndian.AppendUint32(out, uint32(len(c.data)))
			out = append(out, c.data...)
		}
	}
	return out
}

// FuzzDecodeRowChange decodes insert, update and delete messages and turns
// them into events. No input may panic. An accepted message must encode back
// to the bytes it was read from, and every event built from it must be
// canonical JSON with the contract's members.
func FuzzDecodeRowChange(f *testing.F) {
	f.Add([]byte("I\x00\x00@\x00N\x00\x02t\x00\x00\x00\x011n"))
	f.Add([]byte("U\x00\x00@\x00O\x00\x01t\x00\x00\x00\x011N\x00\x01t\x00\x00\x00\x012"))
	f.Add([]byte("D\x00\x00@\x00K\x00\x02t\x00\x00\x00\x011u"))
	f.Add([]byte("I\x00\x00@\x00N\x00\x01b\x00\x00\x00\x04\x00\x00\x00\x01"))
	f.Add([]byte("I\x00\x00@\x00N\x00\x01t\xff\xff\xff\xff"))
	rel := fuzzRelation()

	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 || !strings.ContainsRune("IUD", rune(msg[0])) {
			return // the session hands only these to decodeRowChange
		}
		var rc rowChange
		if err := decodeRowChange(msg, &rc); err != nil {
			return
		}
		if encoded := encodeRowChange(&rc); !bytes.HasPrefix(msg, encoded) {
			t.Fatalf("decoded %+v encodes to %q, which does not start the input %q", rc, encoded, msg)
		}

		b := &builder{}
		var c *change
		var err error
		switch rc.op {
		case 'I':
			c, err = b.insert(rel, rc.new)
		case 'U':
			c, err = b.update(rel, &rc)
		default:
			c, err = b.delete(rel, &rc)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "only text format is supported") {
				t.Fatalf("building a change from %q: %v", msg, err)
			}
			return
		}
		tx := &txn{commitLSN: 0x16B3748, commitTime: time.Unix(1632150985, 123456000), xid: 7421}
		for _, e := range b.events(c, tx) {
			checkPayload(t, rel, e.Payload)
		}
	})
}

// checkPayload checks that payload is canonical JSON whose changes and old
// name only columns of rel.
func checkPayload(t *testing.T, rel *relation, payload []byte) {
	t.Helper()
	if !json.Valid(payload) {
		t.Fatalf("payload is not valid JSON: %q", payload)
	}
	// Canonicalize fails past its nesting limit, which a deep jsonb value
	// inside the payload may reach; the payload is then checked no further.
	if canonical, err := canon.Canonicalize(nil, payload); err == nil && !bytes.Equal(canonical, payload) {
		t.Fatalf("payload is not canonical:\n got %s\nwant %s", payload, canonical)
	}
	var p struct {
		ID      string                     `json:"id"`
		Event   string                     `json:"event"`
		Changes map[string]json.RawMessage `json:"changes"`
		Old     map[string]json.RawMessage `json:"old"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatalf("decoding payload %q: %v", payload, err)
	}
	if p.ID == "" || p.Event == "" || p.Changes == nil {
		t.Fatalf("payload lacks id, event or changes: %q", payload)
	}
	for name := range p.Changes {
		if !slices.ContainsFunc(rel.columns, func(c column) bool { return c.name == name }) {
			t.Fatalf("changes names unknown column %q: %q", name, payload)
		}
	}
	for name := range p.Old {
		if !slices.ContainsFunc(rel.columns, func(c column) bool { return c.name == name }) {
			t.Fatalf("old names unknown column %q: %q", name, payload)
		}
	}
}

// FuzzParseMessage runs the other pgoutput messages the session reads
// (Begin, Commit, Relation, Truncate and any unknown type) through
// parseMessage, which must return an error, not panic, on a malformed
// message.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("B\x00\x00\x00\x00\x01k7H\x00\x02\x8a\xc4\x1b\x8b\xe4\x00\x00\x00\x00\x1c\xfd"))
	f.Add([]byte("T\x00\x00\x00\x01\x00\x00\x00\x00@\x00"))
	f.Add([]byte("R\x00\x00@\x00public\x00fz\x00f\x00\x01\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff"))
	f.Add([]byte("Y\x00\x00@\x00public\x00mood\x00"))

	f.Fuzz(func(t *testing.T, msg []byte) {
		parsed, err := parseMessage(msg)
		if err != nil {
			return
		}
		if r, ok := parsed.(*pglogrepl.RelationMessage); ok && int(r.ColumnNum) != len(r.Columns) {
			t.Fatalf("relation message says %d columns but holds %d", r.ColumnNum, len(r.Columns))
		}
	})
}

// pglogrepl.Parse panics on each of these messages, or for the Truncate
// allocates 16 GiB. parseMessage must reject them.
func TestParseMessageRejectsMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  string
	}{
		{"Empty", ""},
		{"RelationWithoutColumns", "R\x00\x00@\x00public\x00fz\x00f\x00\x05"},
		{"RelationNameWithoutNUL", "R\x00\x00@\x00public\x00fz"},
		{"RelationColumnCut", "R\x00\x00@\x00public\x00fz\x00f\x00\x01\x01id\x00\x00\x00"},
		{"TruncateHugeCount", "T\xff\xff\xff\xff\x00\x00\x00@\x00"},
		{"TruncateShort", "T\x00\x00\x00\x02\x00\x00\x00@\x00"},
		{"DeleteShortTuple", "D0000"},
		{"UnknownType", "Z\x00\x00\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, err := parseMessage([]byte(tt.msg))
			require.Error(t, err)
			require.Nil(t, msg)
		})
	}
}

func TestParseMessageSkipsLogicalDecodingMessage(t *testing.T) {
	t.Parallel()

	msg, err := parseMessage([]byte("M\x01\x00\x00\x00\x00\x00\x00\x00\x01p\x00\xff\xff\xff\xff"))

	require.NoError(t, err)
	require.Nil(t, msg)
}
