package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

// catalogRow is what typeQuery returns for one type.
type catalogRow struct {
	name, typtype string
	base, elem    uint32
	delim         string
	isArray       bool
}

// fakeCatalog is a Querier that returns typeQuery results from a map and
// counts the queries.
type fakeCatalog struct {
	rows    map[uint32]catalogRow
	err     error
	queries atomic.Int64
}

func (c *fakeCatalog) QueryRow(_ context.Context, _ string, args ...any) pgx.Row {
	c.queries.Add(1)
	return fakeRow{catalog: c, oid: args[0].(uint32)}
}

type fakeRow struct {
	catalog *fakeCatalog
	oid     uint32
}

func (r fakeRow) Scan(dest ...any) error {
	if r.catalog.err != nil {
		return r.catalog.err
	}
	row, ok := r.catalog.rows[r.oid]
	if !ok {
		return pgx.ErrNoRows
	}
	*dest[0].(*string), *dest[1].(*string) = row.name, row.typtype
	*dest[2].(*uint32), *dest[3].(*uint32) = row.base, row.elem
	*dest[4].(*string), *dest[5].(*bool) = row.delim, row.isArray
	return nil
}

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{rows: map[uint32]catalogRow{
		16100: {name: "mood", typtype: "e", delim: ","},
		16101: {name: "mood[]", typtype: "b", elem: 16100, delim: ",", isArray: true},
		16200: {name: "email", typtype: "d", base: pgtype.TextOID, delim: ","},
		16201: {name: "email[]", typtype: "b", elem: 16200, delim: ",", isArray: true},
		16300: {name: "work_email", typtype: "d", base: 16200, delim: ","},
		16400: {name: "scores", typtype: "d", base: pgtype.Int8ArrayOID, delim: ","},
		16500: {name: "int2vector", typtype: "b", elem: pgtype.Int2OID, delim: ","},
		16600: {name: "loop", typtype: "d", base: 16600, delim: ","},
	}}
}

func TestTypeMapResolve(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		oid      uint32
		wantName string
		wantKind Kind
		wantElem uint32
	}{
		{name: "Builtin", oid: pgtype.Int8OID, wantName: "int8", wantKind: KindInt},
		{name: "BuiltinArray", oid: pgtype.TimestamptzArrayOID, wantName: "timestamptz[]", wantKind: KindArray, wantElem: pgtype.TimestamptzOID},
		{name: "Enum", oid: 16100, wantName: "mood", wantKind: KindText},
		{name: "EnumArray", oid: 16101, wantName: "mood[]", wantKind: KindArray, wantElem: 16100},
		{name: "DomainOverText", oid: 16200, wantName: "email", wantKind: KindText},
		{name: "DomainArray", oid: 16201, wantName: "email[]", wantKind: KindArray, wantElem: 16200},
		{name: "DomainOverDomain", oid: 16300, wantName: "work_email", wantKind: KindText},
		{name: "DomainOverArray", oid: 16400, wantName: "scores", wantKind: KindArray, wantElem: pgtype.Int8OID},
		{name: "ElementButNotArray", oid: 16500, wantName: "int2vector", wantKind: KindText},
		{name: "Missing", oid: 16999, wantName: "unknown type 16999", wantKind: KindText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := NewTypeMap(newFakeCatalog())

			typ, err := m.Resolve(context.Background(), tt.oid)
			require.NoError(t, err)
			require.Equal(t, tt.oid, typ.OID)
			require.Equal(t, tt.wantName, typ.Name)
			require.Equal(t, tt.wantKind, typ.Kind)
			if tt.wantElem == 0 {
				require.Nil(t, typ.Elem)
			} else {
				require.NotNil(t, typ.Elem)
				require.Equal(t, tt.wantElem, typ.Elem.OID)
			}
		})
	}
}

func TestTypeMapResolveLoop(t *testing.T) {
	t.Parallel()

	m := NewTypeMap(newFakeCatalog())
	_, err := m.Resolve(context.Background(), 16600)
	require.ErrorContains(t, err, "more than 32 nested domains and arrays")
}

func TestTypeMapQueryError(t *testing.T) {
	t.Parallel()

	catalog := newFakeCatalog()
	catalog.err = errors.New("connection refused")
	m := NewTypeMap(catalog)

	_, err := m.Resolve(context.Background(), 16100)
	require.ErrorContains(t, err, "reading type 16100 from pg_type: connection refused")

	// The error is not cached: the next call queries again and succeeds.
	catalog.err = nil
	typ, err := m.Resolve(context.Background(), 16100)
	require.NoError(t, err)
	require.Equal(t, "mood", typ.Name)
	require.Equal(t, int64(2), catalog.queries.Load())
}

func TestTypeMapCachesConcurrently(t *testing.T) {
	t.Parallel()

	catalog := newFakeCatalog()
	m := NewTypeMap(catalog)
	var wg sync.WaitGroup
	types := make([]*Type, 16)
	for i := range types {
		wg.Go(func() {
			typ, err := m.Resolve(context.Background(), 16101)
			if err == nil {
				types[i] = typ
			}
		})
	}
	wg.Wait()

	for _, typ := range types {
		require.Same(t, types[0], typ)
	}
	queries := catalog.queries.Load()
	typ, err := m.Resolve(context.Background(), 16101)
	require.NoError(t, err)
	require.Same(t, types[0], typ)
	require.Equal(t, queries, catalog.queries.Load(), "a cached type was queried again")
}

func TestBuiltinTypesArrayNames(t *testing.T) {
	t.Parallel()

	// Every built-in array's element is the scalar of the same name.
	for oid, typ := range builtinTypes {
		require.Equal(t, oid, typ.OID)
		if typ.Kind == KindArray {
			require.Equal(t, typ.Elem.Name+"[]", typ.Name)
			require.Same(t, builtinTypes[typ.Elem.OID], typ.Elem)
		}
	}
}

// TestTypeMapPostgres resolves enums, domains and their arrays in a real
// database, and converts values as Postgres writes them in the settings of
// the replication session.
func TestTypeMapPostgres(t *testing.T) {
	t.Parallel()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	require.NoError(t, err)
	for name, value := range map[string]string{
		"DateStyle": "ISO", "IntervalStyle": "postgres", "TimeZone": "UTC",
		"extra_float_digits": "1", "bytea_output": "hex",
	} {
		cfg.ConnConfig.RuntimeParams[name] = value
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	_, err = pool.Exec(ctx, `
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'very happy');
		CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
		CREATE DOMAIN work_email AS email;
		CREATE DOMAIN big AS int8;
		CREATE DOMAIN scores AS int4[];
		CREATE TYPE pair AS (a int4, b text);`)
	require.NoError(t, err)

	t.Run("BuiltinArrays", func(t *testing.T) { testBuiltinArrays(ctx, t, pool) })
	t.Run("ResolveKinds", func(t *testing.T) { testResolveKinds(ctx, t, pool) })
	t.Run("ConvertOutput", func(t *testing.T) { testConvertOutput(ctx, t, pool) })
}

// testBuiltinArrays checks the element type and delimiter of every built-in
// array type against pg_type.
func testBuiltinArrays(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	for oid, typ := range builtinTypes {
		if typ.Kind != KindArray {
			continue
		}
		var elem uint32
		var delim string
		err := pool.QueryRow(ctx, `SELECT t.typelem, e.typdelim::text
			FROM pg_type t JOIN pg_type e ON e.oid = t.typelem WHERE t.oid = $1`, oid).Scan(&elem, &delim)
		require.NoError(t, err, typ.Name)
		require.Equal(t, elem, typ.Elem.OID, typ.Name)
		require.Equal(t, delim, string(typ.delim), typ.Name)
	}
}

func testResolveKinds(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	tests := []struct {
		typeName string
		wantName string
		wantKind Kind
		wantElem string // element type name for arrays
	}{
		{typeName: "mood", wantName: "mood", wantKind: KindText},
		{typeName: "mood[]", wantName: "mood[]", wantKind: KindArray, wantElem: "mood"},
		{typeName: "email", wantName: "email", wantKind: KindText},
		{typeName: "email[]", wantName: "email[]", wantKind: KindArray, wantElem: "email"},
		{typeName: "work_email", wantName: "work_email", wantKind: KindText},
		{typeName: "big", wantName: "big", wantKind: KindInt},
		{typeName: "scores", wantName: "scores", wantKind: KindArray, wantElem: "int4"},
		{typeName: "pair", wantName: "pair", wantKind: KindText},
		{typeName: "pair[]", wantName: "pair[]", wantKind: KindArray, wantElem: "pair"},
		{typeName: "int2vector", wantName: "int2vector", wantKind: KindText},
		{typeName: "money", wantName: "money", wantKind: KindText},
		{typeName: "int4range[]", wantName: "int4range[]", wantKind: KindArray, wantElem: "int4range"},
	}
	m := NewTypeMap(pool)
	for _, tt := range tests {
		var oid uint32
		require.NoError(t, pool.QueryRow(ctx, "SELECT $1::regtype::oid", tt.typeName).Scan(&oid))

		typ, err := m.Resolve(ctx, oid)
		require.NoError(t, err, tt.typeName)
		require.Equal(t, oid, typ.OID, tt.typeName)
		require.Equal(t, tt.wantName, typ.Name, tt.typeName)
		require.Equal(t, tt.wantKind, typ.Kind, tt.typeName)
		if tt.wantElem == "" {
			require.Nil(t, typ.Elem, tt.typeName)
			continue
		}
		require.NotNil(t, typ.Elem, tt.typeName)
		require.Equal(t, tt.wantElem, typ.Elem.Name, tt.typeName)
	}
}

// testConvertOutput converts the text that Postgres writes for each
// expression and compares the JSON.
func testConvertOutput(ctx context.Context, t *testing.T, pool *pgxpool.Pool) {
	tests := []struct {
		expr string
		want string
	}{
		{`true`, `true`},
		{`9007199254740991::int8`, `9007199254740991`},
		{`9007199254740992::int8`, `"9007199254740992"`},
		{`(-9223372036854775808)::int8`, `"-9223372036854775808"`},
		{`42::big`, `42`},
		{`'NaN'::numeric`, `"NaN"`},
		{`'-Infinity'::numeric`, `"-Infinity"`},
		{`1.50::numeric`, `"1.50"`},
		{`'-0'::float8`, `0`},
		{`'1e21'::float8`, `1e+21`},
		{`'1e-7'::float8`, `1e-7`},
		{`'5e-324'::float8`, `5e-324`},
		{`0.1::float8 + 0.2::float8`, `0.30000000000000004`},
		{`'NaN'::float8`, `"NaN"`},
		{`'-Infinity'::float4`, `"-Infinity"`},
		{`0.1::float4`, `0.1`},
		{`'3.4028235e38'::float4`, `3.4028235e+38`},
		{`'ab'::char(4)`, `"ab  "`},
		{`'tab' || chr(9) || '<&>' || chr(10) || chr(8232)`, "\"tab\\t<&>\\n\u2028\""},
		{`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid`, `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{`'very happy'::mood`, `"very happy"`},
		{`'a@b.example'::work_email`, `"a@b.example"`},
		{`'{"b": 1, "a": [1.0, 12345678901234567890], "10": {}}'::jsonb`, `{"10":{},"a":[1,"12345678901234567890"],"b":1}`},
		{`'{"b": 1, "b": 2.50e1, "2": "x"}'::json`, `{"2":"x","b":25}`},
		{`''::bytea`, `""`},
		{`'\x00ff10fe'::bytea`, `"AP8Q/g=="`},
		{`'2021-09-20'::date`, `"2021-09-20"`},
		{`'0044-03-15 BC'::date`, `"0044-03-15 BC"`},
		{`'15:16:25.5'::time`, `"15:16:25.5"`},
		{`'15:16:25+05:30'::timetz`, `"15:16:25+05:30"`},
		{`'2021-09-20 15:16:25.123456'::timestamp`, `"2021-09-20 15:16:25.123456"`},
		{`'1 year 2 months 3 days 04:05:06.7'::interval`, `"1 year 2 mons 3 days 04:05:06.7"`},
		{`'2021-09-20 15:16:25.123456+05:30'::timestamptz`, `"2021-09-20T09:46:25.123456Z"`},
		{`'2021-09-20 15:16:25'::timestamptz`, `"2021-09-20T15:16:25.000000Z"`},
		{`'0044-03-15 12:00:00 BC'::timestamptz`, `"-000043-03-15T12:00:00.000000Z"`},
		{`'0001-12-31 23:59:59.999999 BC'::timestamptz`, `"0000-12-31T23:59:59.999999Z"`},
		{`'4714-11-24 00:00:00 BC'::timestamptz`, `"-004713-11-24T00:00:00.000000Z"`},
		{`'294276-12-31 23:59:59.999999'::timestamptz`, `"+294276-12-31T23:59:59.999999Z"`},
		{`'infinity'::timestamptz`, `"infinity"`},
		{`'-infinity'::timestamptz`, `"-infinity"`},
		{`ARRAY['a b', 'c"d', NULL, 'e\f', '', 'NULL', '{}', ',', ' x ']`, `["a b","c\"d",null,"e\\f","","NULL","{}",","," x "]`},
		{`ARRAY[[1, 2], [3, NULL]]`, `[[1,2],[3,null]]`},
		{`'[0:1]={7,8}'::int4[]`, `[7,8]`},
		{`'{}'::int4[]`, `[]`},
		{`ARRAY[9007199254740992]::int8[]`, `["9007199254740992"]`},
		{`ARRAY['very happy', 'sad', NULL]::mood[]`, `["very happy","sad",null]`},
		{`ARRAY['x@y']::email[]`, `["x@y"]`},
		{`'{1,2}'::scores`, `[1,2]`},
		{`ARRAY['{"k": [1, 2]}'::jsonb, 'null']`, `[{"k":[1,2]},null]`},
		{`ARRAY['\x00'::bytea, '\xff']`, `["AA==","/w=="]`},
		{`ARRAY['2021-09-20 15:16:25+02'::timestamptz]`, `["2021-09-20T13:16:25.000000Z"]`},
		{`ARRAY['NaN'::float8, '-0']`, `["NaN",0]`},
		{`ARRAY[box '((1,1),(0,0))', box '((3,3),(2,2))']`, `["(1,1),(0,0)","(3,3),(2,2)"]`},
		{`ARRAY[ROW(1, 'a,b')::pair]`, `["(1,\"a,b\")"]`},
	}
	m := NewTypeMap(pool)
	for _, tt := range tests {
		text, oid := outputText(ctx, t, pool, tt.expr)
		typ, err := m.Resolve(ctx, oid)
		require.NoError(t, err, tt.expr)

		got, err := typ.AppendJSON(nil, text)
		require.NoError(t, err, "%s: text %q", tt.expr, text)
		require.Equal(t, tt.want, string(got), "%s: text %q", tt.expr, text)
	}
}

// outputText returns the text that the output function of expr's type
// writes, which is what pgoutput sends, and the OID of that type. A ::text
// cast would not do, because it differs for some types, such as bool (true
// instead of t).
func outputText(ctx context.Context, t *testing.T, pool *pgxpool.Pool, expr string) ([]byte, uint32) {
	t.Helper()
	sql := fmt.Sprintf("SELECT %s, pg_typeof(%s)::oid", expr, expr)
	rows, err := pool.Query(ctx, sql, pgx.QueryResultFormats{pgx.TextFormatCode, pgx.TextFormatCode})
	require.NoError(t, err, expr)
	defer rows.Close()

	require.True(t, rows.Next(), expr)
	raw := rows.RawValues()
	text := append([]byte(nil), raw[0]...)
	oid, err := strconv.ParseUint(string(raw[1]), 10, 32)
	require.NoError(t, err, expr)
	require.False(t, rows.Next(), expr)
	require.NoError(t, rows.Err(), expr)
	return text, uint32(oid)
}
