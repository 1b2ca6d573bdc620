package cdc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/config"
)

// relation is a watched table as the stream describes it now. pgoutput sends
// a Relation message before the first change of a table in each session and
// again after its columns change, so the cache always follows ALTER TABLE.
type relation struct {
	id       uint32
	table    string // "schema.name"
	model    string
	identity uint8 // replica identity: 'd', 'f', 'i' or 'n'
	columns  []column
	// key holds the positions of the primary key columns, in key order. It
	// is empty for tables without a primary key and without an identity
	// index, whose events then carry a null instanceId.
	key    []int
	events []config.SemanticEvent
}

type column struct {
	name     string
	typ      *Type
	identity bool // part of the replica identity key
}

// relations caches relations by the OID that pgoutput sends.
type relations struct {
	pool     *pgxpool.Pool
	types    *TypeMap
	cfg      config.Config
	byName   map[string]config.Table
	byOID    map[uint32]config.Table // configured tables by OID, which survives a rename
	byID     map[uint32]*relation
	fixedIDs map[uint32]bool // tables whose replica identity was checked
	log      *slog.Logger
}

func newRelations(pool *pgxpool.Pool, types *TypeMap, cfg config.Config, log *slog.Logger) *relations {
	byName := make(map[string]config.Table, len(cfg.Tables))
	for _, t := range cfg.Tables {
		byName[t.Name] = t
	}
	return &relations{pool: pool, types: types, cfg: cfg, byName: byName, byOID: map[uint32]config.Table{},
		byID: map[uint32]*relation{}, fixedIDs: map[uint32]bool{}, log: log}
}

// resolve records the OID of every configured table, so that a table
// renamed while the service runs keeps its model and semantic events.
func (rs *relations) resolve(ctx context.Context) error {
	for _, t := range rs.cfg.Tables {
		var oid *uint32
		if err := rs.pool.QueryRow(ctx, "SELECT to_regclass($1)::oid", quoteTable(t.Name)).Scan(&oid); err != nil {
			return fmt.Errorf("looking up table %s: %w", t.Name, err)
		}
		if oid != nil {
			rs.byOID[*oid] = t
		}
	}
	return nil
}

// configFor returns the configuration of the table a Relation message
// describes, found by OID first and by name second.
func (rs *relations) configFor(msg *pglogrepl.RelationMessage, table string) (config.Table, bool) {
	if t, ok := rs.byOID[msg.RelationID]; ok {
		if t.Name != table {
			rs.log.Warn("watched table was renamed; its model and events stay, but update CIVICBASE_CONFIG before the next restart",
				"table", table, "configured_as", t.Name)
		}
		return t, true
	}
	t, ok := rs.byName[table]
	return t, ok
}

func (rs *relations) get(id uint32) (*relation, error) {
	r, ok := rs.byID[id]
	if !ok {
		return nil, fmt.Errorf("change for relation %d arrived before its Relation message", id)
	}
	return r, nil
}

// update replaces the cached relation with the one in msg, resolving its
// column types and key.
func (rs *relations) update(ctx context.Context, msg *pglogrepl.RelationMessage) error {
	r := &relation{id: msg.RelationID, table: msg.Namespace + "." + msg.RelationName, identity: msg.ReplicaIdentity}
	r.model = config.ModelName(msg.RelationName)
	identity := rs.cfg.ReplicaIdentity
	if t, ok := rs.configFor(msg, r.table); ok {
		r.model, r.events, identity = t.Model, t.Events, t.ReplicaIdentity
	}
	for _, c := range msg.Columns {
		typ, err := rs.types.Resolve(ctx, c.DataType)
		if err != nil {
			return fmt.Errorf("resolving type of %s.%s: %w", r.table, c.Name, err)
		}
		r.columns = append(r.columns, column{name: c.Name, typ: typ, identity: c.Flags&1 == 1})
	}
	key, err := rs.primaryKey(ctx, msg.RelationID, r.columns)
	if err != nil {
		return err
	}
	r.key = key
	if len(r.key) == 0 && r.identity == 'i' {
		for i, c := range r.columns {
			if c.identity {
				r.key = append(r.key, i)
			}
		}
	}
	rs.byID[r.id] = r
	return rs.fixIdentity(ctx, r, identity)
}

// primaryKey returns the positions of the primary key columns of table oid
// within columns. It reads the catalog as it is now, which matches the
// stream unless the key changed after the change being decoded.
func (rs *relations) primaryKey(ctx context.Context, oid uint32, columns []column) ([]int, error) {
	rows, err := rs.pool.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, oid)
	if err != nil {
		return nil, fmt.Errorf("reading primary key of relation %d: %w", oid, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading primary key of relation %d: %w", oid, err)
	}
	key := make([]int, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(columns, func(c column) bool { return c.name == n })
		if i < 0 {
			return nil, nil // the stream's columns predate the key; fall back to no key
		}
		key = append(key, i)
	}
	return key, nil
}

// fixIdentity sets REPLICA IDENTITY FULL on a table that the stream shows
// without it, such as a table created after start-up in schema public.
// Changes logged before the ALTER carry no old row.
func (rs *relations) fixIdentity(ctx context.Context, r *relation, want string) error {
	if want != config.IdentityFull || r.identity == 'f' || r.identity == 'i' || rs.fixedIDs[r.id] {
		return nil
	}
	rs.fixedIDs[r.id] = true
	rs.log.WarnContext(ctx, "watched table lacks REPLICA IDENTITY FULL; setting it now, so its earlier updates report every column",
		"table", r.table)
	return setIdentityFull(ctx, rs.pool, r.table, rs.log)
}
