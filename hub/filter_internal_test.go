package hub

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/store"
)

func TestParseFilterValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    string
		wantErr bool
	}{
		{"String", `"u_1"`, `"u_1"`, false},
		{"EscapedString", `"\u0041b"`, `"Ab"`, false},
		{"Integer", `42`, `42`, false},
		{"NegativeInteger", `-7`, `-7`, false},
		{"MaxSafeInteger", `9007199254740991`, `9007199254740991`, false},
		{"Boolean", `true`, `true`, false},
		{"PastSafeInteger", `9007199254740992`, "", true},
		{"Fraction", `1.5`, "", true},
		{"Exponent", `1e3`, "", true},
		{"Null", `null`, "", true},
		{"Object", `{"a":1}`, "", true},
		{"Array", `[1]`, "", true},
		{"Empty", ``, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := parseFilterValue(json.RawMessage(tt.raw))
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, string(v.raw))
		})
	}
}

func TestFilterValueMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		pinned string
		column string
		want   bool
	}{
		{"SameString", `"a"`, `"a"`, true},
		{"EscapedString", `"a"`, `"\u0061"`, true},
		{"OtherString", `"a"`, `"b"`, false},
		{"StringAgainstNumber", `"1"`, `1`, false},
		{"NumberAgainstString", `1`, `"1"`, false},
		{"SameNumber", `1`, `1`, true},
		{"NumberWithFraction", `1`, `1.0`, true},
		{"NumberWithExponent", `100`, `1e2`, true},
		{"OtherNumber", `1`, `2`, false},
		{"NearNumber", `1`, `1.0000001`, false},
		{"SameBoolean", `true`, `true`, true},
		{"OtherBoolean", `true`, `false`, false},
		{"Null", `1`, `null`, false},
		{"Object", `1`, `{"owner_id":1}`, false},
		{"Array", `1`, `[1]`, false},
		{"Empty", `1`, ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := parseFilterValue(json.RawMessage(tt.pinned))
			require.NoError(t, err)
			require.Equal(t, tt.want, v.matches(json.RawMessage(tt.column)))
		})
	}
}

func TestFilterMatchesRow(t *testing.T) {
	t.Parallel()
	f := filter{}
	for column, raw := range map[string]string{"owner_id": `1`, "team": `"a"`} {
		v, err := parseFilterValue(json.RawMessage(raw))
		require.NoError(t, err)
		f[column] = v
	}
	tests := []struct {
		name    string
		payload string
		want    bool
	}{
		{"AllInChanges", `{"changes":{"owner_id":1,"team":"a","n":2}}`, true},
		{"ChangesBeforeOld", `{"changes":{"owner_id":1,"team":"a"},"old":{"owner_id":2,"team":"b"}}`, true},
		{"MovedAway", `{"changes":{"owner_id":2},"old":{"owner_id":1,"team":"a"}}`, false},
		{"FromOld", `{"changes":{},"old":{"owner_id":1,"team":"a"}}`, true},
		{"SplitAcrossBoth", `{"changes":{"team":"a"},"old":{"owner_id":1}}`, true},
		{"ColumnMissing", `{"changes":{"team":"a"},"old":{"team":"b"}}`, false},
		{"OneColumnDiffers", `{"changes":{"owner_id":1,"team":"b"}}`, false},
		{"NoRow", `{"changes":{}}`, false},
		{"InvalidPayload", `{"changes":`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			row := newEventRow(&store.Event{Payload: []byte(tt.payload)})
			require.Equal(t, tt.want, f.matches(row))
		})
	}
}
