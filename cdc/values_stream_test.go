package cdc_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// typeCase is one column: its type, an inserted value and an updated value,
// each with the exact JSON expected in the event.
type typeCase struct {
	column, typ        string
	insert, insertJSON string
	update, updateJSON string
}

var typeCases = []typeCase{
	{"c_bool", "bool", "true", "true", "false", "false"},
	{"c_int2", "int2", "-32768", "-32768", "7", "7"},
	{"c_int4", "int4", "2147483647", "2147483647", "-1", "-1"},
	{"c_int8", "int8", "9007199254740991", "9007199254740991", "9007199254740992", `"9007199254740992"`},
	{"c_int8_neg", "int8", "-9223372036854775808", `"-9223372036854775808"`, "-9007199254740991", "-9007199254740991"},
	{"c_numeric", "numeric", "123456789012345678901234567890.123456789", `"123456789012345678901234567890.123456789"`, "'NaN'", `"NaN"`},
	{"c_numeric_scale", "numeric(6,2)", "12.5", `"12.50"`, "'-1234.5'", `"-1234.50"`},
	{"c_float4", "float4", "1.1", "1.1", "'NaN'", `"NaN"`},
	{"c_float8", "float8", "0.1", "0.1", "'-Infinity'", `"-Infinity"`},
	{"c_float8_big", "float8", "1e21", "1e+21", "'-0'", "0"},
	{"c_float8_inf", "float8", "'Infinity'", `"Infinity"`, "5e-324", "5e-324"},
	{"c_text", "text", `E'line\nbreak <>& "q" \u2028 😀'`, `"line\nbreak <>& \"q\" ` + "\u2028" + ` 😀"`, "''", `""`},
	{"c_varchar", "varchar(10)", "'abc'", `"abc"`, "'xyz'", `"xyz"`},
	{"c_char", "char(5)", "'ab'", `"ab   "`, "'abcde'", `"abcde"`},
	{"c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, "'00000000-0000-0000-0000-000000000000'", `"00000000-0000-0000-0000-000000000000"`},
	{"c_json", "json", `'{"b": 1, "a": [1.0, 2e2], "10": true, "2": null}'`, `{"2":null,"10":true,"b":1,"a":[1,200]}`, `'12345678901234567890'`, `"12345678901234567890"`},
	{"c_jsonb", "jsonb", `'{"z": {"y": "<&>"}, "a": -0}'`, `{"a":0,"z":{"y":"<&>"}}`, `'[1, "two", null]'`, `[1,"two",null]`},
	{"c_bytea", "bytea", `'\x00ff10'`, `"AP8Q"`, `''`, `""`},
	{"c_date", "date", "'2024-02-29'", `"2024-02-29"`, "'infinity'", `"infinity"`},
	{"c_time", "time", "'13:45:01.5'", `"13:45:01.5"`, "'00:00'", `"00:00:00"`},
	{"c_timetz", "timetz", "'13:45:01+02'", `"13:45:01+02"`, "'23:59:59.999999-05:30'", `"23:59:59.999999-05:30"`},
	{"c_timestamp", "timestamp", "'2021-09-20 15:16:25.123456'", `"2021-09-20 15:16:25.123456"`, "'1999-01-08 04:05:06'", `"1999-01-08 04:05:06"`},
	{"c_timestamptz", "timestamptz", "'2021-09-20 17:16:25.123456+02'", `"2021-09-20T15:16:25.123456Z"`, "'infinity'", `"infinity"`},
	{"c_timestamptz_bc", "timestamptz", "'0044-03-15 12:00:00+00 BC'", `"-000043-03-15T12:00:00.000000Z"`, "'-infinity'", `"-infinity"`},
	{"c_interval", "interval", "'1 year 2 months 3 days 04:05:06.7'", `"1 year 2 mons 3 days 04:05:06.7"`, "'-1 day'", `"-1 days"`},
	{"c_enum", "mood", "'happy'", `"happy"`, "'sad'", `"sad"`},
	{"c_domain", "email", "'a@example.com'", `"a@example.com"`, "'b@example.com'", `"b@example.com"`},
	{"c_null", "text", "NULL", "null", "'now set'", `"now set"`},
	{"a_bool", "bool[]", "'{t,f,NULL}'", "[true,false,null]", "'{}'", "[]"},
	{"a_int2", "int2[]", "'{1,-2}'", "[1,-2]", "'{3}'", "[3]"},
	{"a_int4", "int4[]", "'{1,2,3}'", "[1,2,3]", "'{{1,2},{3,4}}'", "[[1,2],[3,4]]"},
	{"a_int8", "int8[]", "'{9007199254740993,1}'", `["9007199254740993",1]`, "'{NULL}'", "[null]"},
	{"a_numeric", "numeric[]", "'{1.50,NaN}'", `["1.50","NaN"]`, "'{0}'", `["0"]`},
	{"a_float4", "float4[]", "'{1.5,NaN}'", `[1.5,"NaN"]`, "'{-Infinity}'", `["-Infinity"]`},
	{"a_float8", "float8[]", "'{0.1,1e-7,Infinity}'", `[0.1,1e-7,"Infinity"]`, "'{123.456}'", "[123.456]"},
	{"a_text", "text[]", `'{"a,b","c\"d",NULL,"NULL",""}'`, `["a,b","c\"d",null,"NULL",""]`, `ARRAY['x y', 'back\slash']`, `["x y","back\\slash"]`},
	{"a_varchar", "varchar[]", "'{a,b}'", `["a","b"]`, "'{c}'", `["c"]`},
	{"a_char", "char(3)[]", "'{a,bb}'", `["a  ","bb "]`, "'{ccc}'", `["ccc"]`},
	{"a_uuid", "uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", `["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]`, "'{}'", "[]"},
	{"a_json", "json[]", `ARRAY['{"a":1}', '[2]']::json[]`, `[{"a":1},[2]]`, `ARRAY['null']::json[]`, `[null]`},
	{"a_jsonb", "jsonb[]", `ARRAY['{"b":1,"a":2}']::jsonb[]`, `[{"a":2,"b":1}]`, `ARRAY['"s"']::jsonb[]`, `["s"]`},
	{"a_bytea", "bytea[]", `ARRAY['\x01'::bytea, '\xfffe'::bytea]`, `["AQ==","//4="]`, `ARRAY[NULL::bytea]`, `[null]`},
	{"a_date", "date[]", "'{2024-01-01,infinity}'", `["2024-01-01","infinity"]`, "'{1999-12-31}'", `["1999-12-31"]`},
	{"a_time", "time[]", "'{10:00,23:59:59.5}'", `["10:00:00","23:59:59.5"]`, "'{00:00:01}'", `["00:00:01"]`},
	{"a_timetz", "timetz[]", "'{10:00+01}'", `["10:00:00+01"]`, "'{11:00-03}'", `["11:00:00-03"]`},
	{"a_timestamp", "timestamp[]", "'{2020-01-01 00:00:00}'", `["2020-01-01 00:00:00"]`, "'{2020-01-02 03:04:05.6}'", `["2020-01-02 03:04:05.6"]`},
	{"a_timestamptz", "timestamptz[]", "'{2020-01-01 00:00:00+05:30,-infinity}'", `["2019-12-31T18:30:00.000000Z","-infinity"]`, "'{2020-06-01 12:00:00.000001+00}'", `["2020-06-01T12:00:00.000001Z"]`},
	{"a_interval", "interval[]", "'{1 day,00:00:01}'", `["1 day","00:00:01"]`, "'{2 hours}'", `["02:00:00"]`},
	{"a_enum", "mood[]", "'{happy,sad}'", `["happy","sad"]`, "'{ok}'", `["ok"]`},
	{"a_domain", "email[]", "'{a@x.io}'", `["a@x.io"]`, "'{b@x.io,c@x.io}'", `["b@x.io","c@x.io"]`},
	{"a_null", "int4[]", "NULL", "null", "'{1}'", "[1]"},
}

func TestEveryTypeReachesExactJSON(t *testing.T) {
	t.Parallel()
	var cols, inserts, updates []string
	for _, c := range typeCases {
		cols = append(cols, c.column+" "+c.typ)
		inserts = append(inserts, c.insert)
		updates = append(updates, fmt.Sprintf("%s = %s", c.column, c.update))
	}
	b := setup(t, `
		CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
		CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
		CREATE TABLE typed (id int PRIMARY KEY, `+strings.Join(cols, ", ")+`);`, "")

	b.exec(t, `INSERT INTO typed VALUES (1, `+strings.Join(inserts, ", ")+`)`)
	b.exec(t, `UPDATE typed SET `+strings.Join(updates, ", ")+` WHERE id = 1`)
	events := b.rawEvents(t, 2)

	insertChanges := section(t, events[0], `"changes":`, `,"timestamp":`)
	updateChanges := section(t, events[1], `"changes":`, `,"old":`)
	updateOld := section(t, events[1], `,"old":`, `,"timestamp":`)
	for _, c := range typeCases {
		t.Run(c.column, func(t *testing.T) {
			requireMember(t, insertChanges, c.column, c.insertJSON)
			requireMember(t, updateChanges, c.column, c.updateJSON)
			requireMember(t, updateOld, c.column, c.insertJSON)
		})
	}
}

// requireMember checks that obj, a JSON object, has the member column with
// exactly the value want.
func requireMember(t *testing.T, obj, column, want string) {
	t.Helper()
	m := `"` + column + `":` + want
	require.True(t, strings.Contains(obj, m+",") || strings.HasSuffix(obj, m+"}"), "want %s in %s", m, obj)
}

func section(t *testing.T, payload, from, to string) string {
	t.Helper()
	i := strings.Index(payload, from)
	require.GreaterOrEqual(t, i, 0, "payload has no %s: %s", from, payload)
	j := strings.Index(payload[i:], to)
	require.GreaterOrEqual(t, j, 0, "payload has no %s after %s: %s", to, from, payload)
	return payload[i+len(from) : i+j]
}
