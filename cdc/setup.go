package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/config"
)

// minServerVersion is PostgreSQL 15: publications FOR TABLES IN SCHEMA and
// pgoutput's skipping of empty transactions both arrived in that release.
const minServerVersion = 150000

// Preflight checks that the server can feed the service: its version,
// wal_level, the role's privileges and that every configured table exists.
// Each error names what to change.
func Preflight(ctx context.Context, pool *pgxpool.Pool, cfg config.Config) error {
	var version int
	var walLevel, role string
	var canReplicate bool
	err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('wal_level'),
		current_user, (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)`).
		Scan(&version, &walLevel, &role, &canReplicate)
	if err != nil {
		return fmt.Errorf("reading server settings: %w", err)
	}
	var errs []error
	if version < minServerVersion {
		errs = append(errs, fmt.Errorf("PostgreSQL server version %d is too old; civicbase needs PostgreSQL 15 or newer", version))
	}
	if walLevel != "logical" {
		errs = append(errs, fmt.Errorf("wal_level is %q but logical replication needs wal_level=logical; "+
			"run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL (or start it with -c wal_level=logical)", walLevel))
	}
	if !canReplicate {
		errs = append(errs, fmt.Errorf("role %q may not start replication; as a superuser run ALTER ROLE %s WITH REPLICATION;",
			role, pgx.Identifier{role}.Sanitize()))
	}
	for i, t := range cfg.Tables {
		if err := checkTable(ctx, pool, role, i, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkTable(ctx context.Context, pool *pgxpool.Pool, role string, i int, t config.Table) error {
	schema, name, _ := strings.Cut(t.Name, ".")
	var kind string
	var owned bool
	err := pool.QueryRow(ctx, `SELECT c.relkind::text, pg_has_role(c.relowner, 'USAGE')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schema, name).Scan(&kind, &owned)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("tables[%d]: table %q not found in the database; create it or fix the name in CIVICBASE_CONFIG", i, t.Name)
	}
	if err != nil {
		return fmt.Errorf("looking up table %q: %w", t.Name, err)
	}
	if kind != "r" && kind != "p" {
		return fmt.Errorf("tables[%d]: %q is not a table (relkind %s); only ordinary and partitioned tables can be watched", i, t.Name, kind)
	}
	if !owned {
		return fmt.Errorf("tables[%d]: role %q does not own table %q, which publishing it and setting its replica identity require; "+
			"run ALTER TABLE %s OWNER TO %s; or connect as the owner", i, role, t.Name, quoteTable(t.Name), pgx.Identifier{role}.Sanitize())
	}
	return checkEventColumns(ctx, pool, i, t)
}

// checkEventColumns rejects semantic events on columns the table lacks,
// which could never fire.
func checkEventColumns(ctx context.Context, pool *pgxpool.Pool, i int, t config.Table) error {
	rows, err := pool.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, quoteTable(t.Name))
	if err != nil {
		return fmt.Errorf("reading columns of %q: %w", t.Name, err)
	}
	columns, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("reading columns of %q: %w", t.Name, err)
	}
	var errs []error
	for j, e := range t.Events {
		for _, c := range e.Columns {
			if !slices.Contains(columns, c) {
				errs = append(errs, fmt.Errorf("tables[%d].events[%d]: column %q of event %s is not a column of %q (columns: %s)",
					i, j, c, e.Name, t.Name, strings.Join(columns, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// quoteTable quotes "schema.table" as an SQL identifier.
func quoteTable(name string) string {
	schema, table, _ := strings.Cut(name, ".")
	return pgx.Identifier{schema, table}.Sanitize()
}

// EnsurePublication creates the publication, or changes an existing one, so
// that it covers exactly the watched tables, published under their partition
// root.
func EnsurePublication(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, log *slog.Logger) error {
	pub := pgx.Identifier{cfg.Publication}.Sanitize()
	target := "TABLES IN SCHEMA public"
	if len(cfg.Tables) > 0 {
		names := make([]string, len(cfg.Tables))
		for i, t := range cfg.Tables {
			names[i] = quoteTable(t.Name)
		}
		target = "TABLE " + strings.Join(names, ", ")
	}

	var allTables bool
	err := pool.QueryRow(ctx, "SELECT puballtables FROM pg_publication WHERE pubname = $1", cfg.Publication).Scan(&allTables)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = pool.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR %s WITH (publish_via_partition_root = true)", pub, target))
		if err != nil {
			return fmt.Errorf("creating publication %s: %w", cfg.Publication, err)
		}
		log.InfoContext(ctx, "publication created", "publication", cfg.Publication, "tables", target)
		return nil
	case err != nil:
		return fmt.Errorf("looking up publication %s: %w", cfg.Publication, err)
	case allTables:
		return fmt.Errorf("publication %s is FOR ALL TABLES, which would capture the service's own civicbase schema; "+
			"drop it (DROP PUBLICATION %s;) or set another publication name", cfg.Publication, pub)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET %s", pub, target)); err != nil {
		return fmt.Errorf("setting the tables of publication %s: %w", cfg.Publication, err)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true)", pub)); err != nil {
		return fmt.Errorf("setting publish_via_partition_root on publication %s: %w", cfg.Publication, err)
	}
	return nil
}

// EnsureReplicaIdentity sets REPLICA IDENTITY FULL on every watched table
// that the configuration wants it for and that has DEFAULT or NOTHING,
// partitions included, because Postgres logs the old row per partition.
func EnsureReplicaIdentity(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, log *slog.Logger) error {
	var want []string
	if len(cfg.Tables) == 0 {
		if cfg.ReplicaIdentity != config.IdentityFull {
			return nil
		}
		want = []string{"public.*"}
	}
	for _, t := range cfg.Tables {
		if t.ReplicaIdentity == config.IdentityFull {
			want = append(want, t.Name)
		}
	}
	for _, name := range want {
		if err := setIdentityFull(ctx, pool, name, log); err != nil {
			return err
		}
	}
	return nil
}

// setIdentityFull sets FULL on name ("schema.table", or "public.*" for all
// tables of public) and on its partitions where it is not set yet.
func setIdentityFull(ctx context.Context, pool *pgxpool.Pool, name string, log *slog.Logger) error {
	// Only DEFAULT and NOTHING are changed: a table set to USING INDEX was
	// configured on purpose, and its index gives events their instanceId.
	const query = `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relreplident IN ('d', 'n') AND (
			($1 = 'public.*' AND n.nspname = 'public')
			OR c.oid IN (SELECT relid FROM pg_partition_tree(to_regclass($1)))
			OR c.oid = to_regclass($1))`
	arg := name
	if name != "public.*" {
		arg = quoteTable(name)
	}
	rows, err := pool.Query(ctx, query, arg)
	if err != nil {
		return fmt.Errorf("finding tables of %s without REPLICA IDENTITY FULL: %w", name, err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pgx.Identifier, error) {
		var schema, table string
		err := r.Scan(&schema, &table)
		return pgx.Identifier{schema, table}, err
	})
	if err != nil {
		return fmt.Errorf("reading tables of %s: %w", name, err)
	}
	for _, id := range tables {
		if _, err := pool.Exec(ctx, "ALTER TABLE "+id.Sanitize()+" REPLICA IDENTITY FULL"); err != nil {
			return fmt.Errorf("setting REPLICA IDENTITY FULL on %s: %w", id.Sanitize(), err)
		}
		log.InfoContext(ctx, "replica identity set to full", "table", strings.Join(id, "."))
	}
	return nil
}
