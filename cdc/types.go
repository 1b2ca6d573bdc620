package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Kind is the rule that turns a Postgres type's text form into JSON.
type Kind uint8

const (
	// KindText writes the text form as a JSON string. It covers the text
	// types, numeric (exact digits, NaN and ±Infinity), uuid, enums, date,
	// time, timetz, timestamp, interval and every type without a kind of
	// its own.
	KindText Kind = iota
	// KindBool writes t and f as true and false.
	KindBool
	// KindInt writes int2, int4 and int8 as a JSON number within
	// ±(2^53-1), the range where JavaScript numbers represent every integer
	// exactly, and as a string of the digits outside it.
	KindInt
	// KindFloat writes float4 and float8 as a JavaScript number, and NaN,
	// Infinity and -Infinity as strings.
	KindFloat
	// KindJSON embeds json and jsonb values as canonical JSON.
	KindJSON
	// KindBytea writes bytea as a standard base64 string.
	KindBytea
	// KindTimestamptz writes timestamptz as an RFC 3339 string in UTC with
	// microseconds.
	KindTimestamptz
	// KindArray writes an array as a JSON array of its elements.
	KindArray
)

var kindNames = [...]string{
	KindText: "text", KindBool: "bool", KindInt: "int", KindFloat: "float",
	KindJSON: "json", KindBytea: "bytea", KindTimestamptz: "timestamptz", KindArray: "array",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Type is a resolved Postgres type. Types are shared between goroutines and
// must not be modified.
type Type struct {
	OID uint32
	// Name is the type's name as Postgres formats it, such as "int4",
	// "mood[]" or "public.email".
	Name string
	// Kind is the kind of the type, or of its base type for a domain.
	Kind Kind
	// Elem is the element type of an array, and nil for other kinds.
	Elem *Type
	// delim separates array elements in the text form: ',' for every
	// built-in element type except box, which uses ';'.
	delim byte
}

// Querier runs a query that returns one row. *pgxpool.Pool, *pgx.Conn and
// pgx.Tx satisfy it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TypeMap resolves type OIDs to Types. Built-in types are known without a
// query. Other types, such as enums, domains, their arrays and extension
// types, are read from pg_type once and cached. A TypeMap is safe for
// concurrent use.
type TypeMap struct {
	q     Querier
	mu    sync.RWMutex
	types map[uint32]*Type
}

// NewTypeMap returns a TypeMap that reads types unknown to it through q.
func NewTypeMap(q Querier) *TypeMap {
	return &TypeMap{q: q, types: map[uint32]*Type{}}
}

// maxTypeChain bounds how many domains and array levels Resolve follows from
// one type, as a guard against a catalog that refers back to itself.
const maxTypeChain = 32

// Resolve returns the Type of oid. Errors from the query are returned and not
// cached.
//
// NOTE: an OID that pg_type does not contain, such as a type dropped after
// the change was written, resolves to a type of KindText. Values of a dropped
// array type then become one string instead of a JSON array.
func (m *TypeMap) Resolve(ctx context.Context, oid uint32) (*Type, error) {
	return m.resolve(ctx, oid, 0)
}

func (m *TypeMap) resolve(ctx context.Context, oid uint32, depth int) (*Type, error) {
	if t, ok := builtinTypes[oid]; ok {
		return t, nil
	}
	m.mu.RLock()
	t, ok := m.types[oid]
	m.mu.RUnlock()
	if ok {
		return t, nil
	}

	if depth >= maxTypeChain {
		return nil, fmt.Errorf("resolving type %d: more than %d nested domains and arrays", oid, maxTypeChain)
	}
	t, err := m.lookup(ctx, oid, depth)
	if err != nil {
		return nil, err
	}

	// Two goroutines may look up the same OID at once. Both results are
	// equal, and the first one stored wins.
	m.mu.Lock()
	defer m.mu.Unlock()
	if cached, ok := m.types[oid]; ok {
		return cached, nil
	}
	m.types[oid] = t
	return t, nil
}

// typeQuery reads what Resolve needs about one type. A true array type is
// the typarray of its element type. That check excludes types such as
// int2vector, point and name, which have a typelem but another text form.
const typeQuery = `SELECT t.oid::regtype::text, t.typtype::text, t.typbasetype, t.typelem,
	coalesce(e.typdelim::text, ','), t.typcategory = 'A' AND coalesce(e.typarray = t.oid, false)
FROM pg_catalog.pg_type t
LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem
WHERE t.oid = $1`

// lookup reads the type oid from pg_type and resolves the base type of a
// domain and the element type of an array.
func (m *TypeMap) lookup(ctx context.Context, oid uint32, depth int) (*Type, error) {
	var (
		name, typtype, delim string
		base, elem           uint32
		isArray              bool
	)
	err := m.q.QueryRow(ctx, typeQuery, oid).Scan(&name, &typtype, &base, &elem, &delim, &isArray)
	if errors.Is(err, pgx.ErrNoRows) {
		return &Type{OID: oid, Name: fmt.Sprintf("unknown type %d", oid), Kind: KindText}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading type %d from pg_type: %w", oid, err)
	}

	switch {
	case typtype == "d":
		baseType, err := m.resolve(ctx, base, depth+1)
		if err != nil {
			return nil, fmt.Errorf("resolving base type of domain %s: %w", name, err)
		}
		return &Type{OID: oid, Name: name, Kind: baseType.Kind, Elem: baseType.Elem, delim: baseType.delim}, nil
	case isArray:
		elemType, err := m.resolve(ctx, elem, depth+1)
		if err != nil {
			return nil, fmt.Errorf("resolving element type of %s: %w", name, err)
		}
		return &Type{OID: oid, Name: name, Kind: KindArray, Elem: elemType, delim: delim[0]}, nil
	}
	// Enums, composite types, ranges and base types of extensions.
	return &Type{OID: oid, Name: name, Kind: KindText}, nil
}

// builtinTypes contains the built-in types that civicbase maps, with their
// array types. Built-in types missing here are resolved through pg_type like
// any other type.
var builtinTypes = func() map[uint32]*Type {
	scalars := []struct {
		oid, arrayOID uint32
		name          string
		kind          Kind
	}{
		{pgtype.BoolOID, pgtype.BoolArrayOID, "bool", KindBool},
		{pgtype.Int2OID, pgtype.Int2ArrayOID, "int2", KindInt},
		{pgtype.Int4OID, pgtype.Int4ArrayOID, "int4", KindInt},
		{pgtype.Int8OID, pgtype.Int8ArrayOID, "int8", KindInt},
		{pgtype.Float4OID, pgtype.Float4ArrayOID, "float4", KindFloat},
		{pgtype.Float8OID, pgtype.Float8ArrayOID, "float8", KindFloat},
		{pgtype.NumericOID, pgtype.NumericArrayOID, "numeric", KindText},
		{pgtype.TextOID, pgtype.TextArrayOID, "text", KindText},
		{pgtype.VarcharOID, pgtype.VarcharArrayOID, "varchar", KindText},
		{pgtype.BPCharOID, pgtype.BPCharArrayOID, "bpchar", KindText},
		{pgtype.QCharOID, pgtype.QCharArrayOID, `"char"`, KindText},
		{pgtype.NameOID, pgtype.NameArrayOID, "name", KindText},
		{pgtype.UUIDOID, pgtype.UUIDArrayOID, "uuid", KindText},
		{pgtype.JSONOID, pgtype.JSONArrayOID, "json", KindJSON},
		{pgtype.JSONBOID, pgtype.JSONBArrayOID, "jsonb", KindJSON},
		{pgtype.ByteaOID, pgtype.ByteaArrayOID, "bytea", KindBytea},
		{pgtype.DateOID, pgtype.DateArrayOID, "date", KindText},
		{pgtype.TimeOID, pgtype.TimeArrayOID, "time", KindText},
		{pgtype.TimetzOID, pgtype.TimetzArrayOID, "timetz", KindText},
		{pgtype.TimestampOID, pgtype.TimestampArrayOID, "timestamp", KindText},
		{pgtype.TimestamptzOID, pgtype.TimestamptzArrayOID, "timestamptz", KindTimestamptz},
		{pgtype.IntervalOID, pgtype.IntervalArrayOID, "interval", KindText},
		{pgtype.OIDOID, pgtype.OIDArrayOID, "oid", KindText},
		{pgtype.InetOID, pgtype.InetArrayOID, "inet", KindText},
		{pgtype.CIDROID, pgtype.CIDRArrayOID, "cidr", KindText},
		{pgtype.MacaddrOID, pgtype.MacaddrArrayOID, "macaddr", KindText},
		{pgtype.BitOID, pgtype.BitArrayOID, "bit", KindText},
		{pgtype.VarbitOID, pgtype.VarbitArrayOID, "varbit", KindText},
		{pgtype.XMLOID, pgtype.XMLArrayOID, "xml", KindText},
		{pgtype.PointOID, pgtype.PointArrayOID, "point", KindText},
		{pgtype.BoxOID, pgtype.BoxArrayOID, "box", KindText},
	}
	types := make(map[uint32]*Type, 2*len(scalars))
	for _, s := range scalars {
		elem := &Type{OID: s.oid, Name: s.name, Kind: s.kind}
		delim := byte(',')
		if s.oid == pgtype.BoxOID {
			delim = ';'
		}
		types[s.oid] = elem
		types[s.arrayOID] = &Type{OID: s.arrayOID, Name: s.name + "[]", Kind: KindArray, Elem: elem, delim: delim}
	}
	return types
}()
