package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestModelName(t *testing.T) {
	t.Parallel()
	for table, want := range map[string]string{
		"user_profiles": "UserProfile",
		"users":         "User",
		"projects":      "Project",
		"categories":    "Category",
		"addresses":     "Address",
		"boxes":         "Box",
		"statuses":      "Status",
		"status":        "Status",
		"news":          "New", // an irregular plural needs a model in the configuration
		"2fa_codes":     "T2faCode",
		"order_items":   "OrderItem",
	} {
		require.Equal(t, want, ModelName(table), table)
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("tables:\n  - name: user_profiles\n  - name: app.orders\n    model: Order\n    replicaIdentity: default\n"))
	require.NoError(t, err)

	require.Equal(t, "civicbase", c.Publication)
	require.Equal(t, "civicbase_slot", c.Slot)
	require.Equal(t, 7*24*time.Hour, c.Retention)
	require.Equal(t, IdentityFull, c.ReplicaIdentity)
	require.Equal(t, 2*time.Minute, c.StallTimeout)
	require.Equal(t, 10*time.Second, c.ShutdownTimeout)
	require.Equal(t, Table{Name: "public.user_profiles", Model: "UserProfile", ReplicaIdentity: IdentityFull}, c.Tables[0])
	require.Equal(t, Table{Name: "app.orders", Model: "Order", ReplicaIdentity: IdentityDefault}, c.Tables[1])
}

func TestParseRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"UnknownField", "tabels: []", "tabels (line 1): unknown key; the keys accepted here are publication, slot,"},
		{"BadSlot", "slot: Bad-Slot", `slot "Bad-Slot" is not a valid slot name`},
		{"ShortRetention", "retention: 1s", "retention 1s is too short"},
		{"ShortStallTimeout", "stallTimeout: 5s", "stallTimeout 5s is too short"},
		{"ShortShutdownTimeout", "shutdownTimeout: 100ms", "shutdownTimeout 100ms is out of range"},
		{"BadIdentity", "replicaIdentity: nothing", `replicaIdentity "nothing" is not known`},
		{"OwnSchema", "tables: [{name: civicbase.events}]", "the service's own schema civicbase"},
		{"Duplicate", "tables: [{name: a}, {name: public.a}]", `table "public.a" is listed twice`},
		{"BadEventName", "tables: [{name: a, events: [{name: Created, on: insert}]}]", `name "Created" is not of the form noun.verb`},
		{"ReservedPrefix", "tables: [{name: a, events: [{name: data.x, on: insert}]}]", `name "data.x" is reserved`},
		{"BadOperation", "tables: [{name: a, events: [{name: a.b, on: upsert}]}]", `on "upsert" is not known`},
		{"ColumnsOnInsert", "tables: [{name: a, events: [{name: a.b, on: insert, columns: [x]}]}]", "columns only apply to on: update"},
		{"BadModel", "tables: [{name: a, model: 'my model'}]", `model "my model" is not a valid model name`},
		{"ShortQueueMetricsInterval", "webhooks: {queueMetricsInterval: 100ms}", "webhooks.queueMetricsInterval 100ms is shorter than 1s"},
		{"NotYAML", "tables: [", "parsing YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml))
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoadReadsEnvironment(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("slot: other_slot\n"), 0o600))
	env := map[string]string{
		"DATABASE_URL": "postgres://u:p@localhost/db", "CIVICBASE_ADMIN_TOKEN": "0123456789abcdef",
		"CIVICBASE_CONFIG": path, "CIVICBASE_DEV": "true",
	}
	c, err := Load(func(k string) string { return env[k] })
	require.NoError(t, err)

	require.Equal(t, "other_slot", c.Slot)
	require.Equal(t, ":8080", c.Addr)
	require.True(t, c.Dev)
	require.Equal(t, "0123456789abcdef", c.AdminToken.Reveal())
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "mysql://x", "CIVICBASE_ADMIN_TOKEN": "short"}
	_, err := Load(func(k string) string { return env[k] })

	require.ErrorContains(t, err, "DATABASE_URL is not a postgres:// URL")
	require.ErrorContains(t, err, "CIVICBASE_ADMIN_TOKEN is missing or shorter than 16 characters")
	_, err = Load(func(k string) string { return map[string]string{"CIVICBASE_DEV": "yes please"}[k] })
	require.ErrorContains(t, err, `CIVICBASE_DEV="yes please" is not a boolean`)
}

func TestSecretIsRedacted(t *testing.T) {
	t.Parallel()
	s := Secret("hunter2hunter2hunter2")
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "token", s)

	require.NotContains(t, fmt.Sprint(s), "hunter2")
	require.NotContains(t, fmt.Sprintf("%v %s", s, s), "hunter2")
	require.NotContains(t, b.String(), "hunter2")
	require.Contains(t, b.String(), "[redacted]")
}

func TestLoadAllowedOrigins(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u@localhost/db", "CIVICBASE_ADMIN_TOKEN": "0123456789abcdef"}
	load := func(origins string) (Config, error) {
		return Load(func(k string) string {
			if k == "CIVICBASE_ALLOWED_ORIGINS" {
				return origins
			}
			return base[k]
		})
	}

	c, err := load(" https://app.example.com , http://localhost:3000,*")
	require.NoError(t, err)
	require.Equal(t, []string{"https://app.example.com", "http://localhost:3000", "*"}, c.AllowedOrigins)
	c, err = load("")
	require.NoError(t, err)
	require.Empty(t, c.AllowedOrigins)
	for _, bad := range []string{"app.example.com", "https://app.example.com/path", "ftp//x"} {
		_, err = load(bad)
		require.ErrorContains(t, err, "is not an origin", bad)
	}
}
