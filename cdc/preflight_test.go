package cdc_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/internal/pgcluster"
	"github.com/civicbase/civicbase/internal/pgtest"
)

func preflight(t *testing.T, url, cfgYAML string) error {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	cfg, err := config.Parse([]byte(cfgYAML))
	require.NoError(t, err)
	return cdc.Preflight(ctx, pool, cfg)
}

func TestPreflightUnknownTable(t *testing.T) {
	t.Parallel()
	err := preflight(t, pgtest.NewDB(t), "tables:\n  - name: public.missing\n")

	require.ErrorContains(t, err, `tables[0]: table "public.missing" not found in the database; create it or fix the name in CIVICBASE_CONFIG`)
}

func TestPreflightWALLevelNotLogical(t *testing.T) {
	t.Parallel()
	pgtest.Cluster(t) // skips when an external server is configured
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{WALLevel: "replica"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Remove(context.Background()) })

	err = preflight(t, c.URL("postgres"), "")

	require.ErrorContains(t, err, `wal_level is "replica" but logical replication needs wal_level=logical; run ALTER SYSTEM SET wal_level = logical;`)
}

func TestPreflightMissingPrivileges(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer admin.Close()
	role := "civicbase_noprivs"
	_, err = admin.Exec(ctx, `DROP ROLE IF EXISTS `+role+`; CREATE ROLE `+role+` LOGIN NOREPLICATION;
		CREATE TABLE owned_elsewhere (id int PRIMARY KEY);`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.ConnConfig.User = role

	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	defer pool.Close()
	cfg, err := config.Parse([]byte("tables:\n  - name: owned_elsewhere\n"))
	require.NoError(t, err)
	err = cdc.Preflight(ctx, pool, cfg)

	require.ErrorContains(t, err, `may not start replication; as a superuser run ALTER ROLE `)
	require.ErrorContains(t, err, `does not own table "public.owned_elsewhere"`)
}
