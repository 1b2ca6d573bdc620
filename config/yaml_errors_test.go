package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseNamesKeyOfYAMLError(t *testing.T) {
	t.Parallel()
	duration := "expected a duration with a unit, such as 90s, 10m or 168h"
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"DurationString", "retention: abc", "retention (line 1): " + duration + ", got a string \"abc\""},
		{"DurationWithoutUnit", "webhooks:\n  timeout: 10", "webhooks.timeout (line 2): " + duration + ", got an integer \"10\""},
		{"ScheduleItem", "webhooks:\n  schedule: [1s, x]", "webhooks.schedule[1] (line 2): " + duration + ", got a string \"x\""},
		{"IntegerString", "batchSize: many", "batchSize (line 1): expected an integer, got a string \"many\""},
		{"StringList", "slot: [1]", "slot (line 1): expected a string, got a list"},
		{"TablesMapping", "tables: {a: {b: c}}", "tables (line 1): expected a list of tables"},
		{"ColumnsInFlowMapping", "tables:\n  - name: a\n    events:\n      - {name: x.y, on: update, columns: {a: b}}",
			"tables[0].events[0].columns (line 4): expected a list of strings, got a mapping"},
		{"EventsMapping", "tables: [{name: a, events: {x: 1}}]", "tables[0].events (line 1): expected a list of events"},
		{"RootList", "- 1", "the top level (line 1): expected a mapping with the keys publication, slot,"},
		{"UnknownTopLevelKey", "foo: 1", "foo (line 1): unknown key; the keys accepted here are publication, slot,"},
		{"UnknownTableKey", "tables:\n  - name: a\n    colour: red",
			"tables[0].colour (line 3): unknown key; the keys accepted here are name, model, replicaIdentity, events"},
		{"UnknownKeyWithSpace", "my key: 1", `"my key" (line 1): unknown key`},
		{"MultilineValue", "0\n\n0", `the top level (line 1): expected a mapping with the keys publication, slot,`},
		{"TagWithTab", "!%09", `the top level (line 1): expected a mapping with the keys publication, slot,`},
		{"CustomTag", "!0", "the top level (line 1): expected a mapping with the keys publication, slot,"},
		{"UnknownWebhooksKey", "webhooks:\n  retries: 3", "webhooks.retries (line 2): unknown key; the keys accepted here are workers,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseListsEveryYAMLError(t *testing.T) {
	t.Parallel()

	_, err := Parse([]byte("batchSize: x\nstatusInterval: [1]\nfoo: 1"))

	require.ErrorContains(t, err, "batchSize (line 1): expected an integer")
	require.ErrorContains(t, err, "statusInterval (line 2): expected a duration")
	require.ErrorContains(t, err, "foo (line 3): unknown key")
}

func TestParseCountsErrorsPastTwenty(t *testing.T) {
	t.Parallel()

	_, err := Parse([]byte("webhooks: {schedule: [" + strings.Repeat("x, ", 5000) + "]}"))

	require.ErrorContains(t, err, "webhooks.schedule[19] (line 1): expected a duration")
	require.NotContains(t, err.Error(), "webhooks.schedule[20]")
	require.ErrorContains(t, err, "\nand 4980 more errors")
}
