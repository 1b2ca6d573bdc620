package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/civicbase/civicbase/cdc"
	"github.com/civicbase/civicbase/store"
)

// statusCommand prints a summary of the slot, the event store and the
// webhook queue, read from the database, for operators without Grafana.
func statusCommand(ctx context.Context, out io.Writer, getenv func(string) string) error {
	dsn := getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("DATABASE_URL is not set; set it to the watched database")
	}
	slot, err := configuredSlot(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := openPool(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	fmt.Fprintf(out, "civicbase status of %s\n\n", describeDSN(dsn))
	if err := printSlot(ctx, out, pool, slot); err != nil {
		return err
	}
	if err := printSlotLock(ctx, out, pool, slot); err != nil {
		return err
	}
	if err := printEvents(ctx, out, pool); err != nil {
		return err
	}
	if err := printGaps(ctx, out, store.New(pool), slot); err != nil {
		return err
	}
	return printWebhooks(ctx, out, pool)
}

func describeDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		return "DATABASE_URL"
	}
	return "database " + u.Path[min(1, len(u.Path)):] + " on " + u.Host
}

func printSlot(ctx context.Context, out io.Writer, pool *pgxpool.Pool, slot string) error {
	var active bool
	var walStatus, confirmed string
	var lag, retained, safe *int64
	err := pool.QueryRow(ctx, `SELECT active, coalesce(wal_status, ''), coalesce(confirmed_flush_lsn::text, ''),
			pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
			pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &walStatus, &confirmed, &lag, &retained, &safe)
	fmt.Fprintf(out, "Replication slot %s\n", slot)
	if errors.Is(err, pgx.ErrNoRows) {
		fmt.Fprintf(out, "  missing: the service creates it on first start; if events were stored from it, "+
			"run civicbase recreate-slot (see \"When a slot is lost\" in the README)\n\n")
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading slot %s: %w", slot, err)
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  active\t%s\n", yesNo(active))
	fmt.Fprintf(w, "  wal_status\t%s\n", walStatus)
	fmt.Fprintf(w, "  confirmed\t%s\n", confirmed)
	fmt.Fprintf(w, "  lag\t%s behind the server's WAL\n", bytesOrUnknown(lag))
	fmt.Fprintf(w, "  retained WAL\t%s\n", bytesOrUnknown(retained))
	switch {
	case safe == nil && walStatus == "lost":
		fmt.Fprintf(w, "  safe_wal_size\tnone: the slot lost WAL it needed (see civicbase recreate-slot)\n")
	case safe == nil:
		fmt.Fprintf(w, "  safe_wal_size\tunlimited (max_slot_wal_keep_size = -1)\n")
	default:
		fmt.Fprintf(w, "  safe_wal_size\t%s\n", humanBytes(*safe))
	}
	fmt.Fprintln(w)
	return w.Flush()
}

// printSlotLock shows which server process holds the slot's advisory lock,
// that is which instance reads the slot, and how many instances stand by.
func printSlotLock(ctx context.Context, out io.Writer, pool *pgxpool.Pool, slot string) error {
	key := cdc.LeaderLockKey(slot)
	rows, err := pool.Query(ctx, `SELECT l.pid, l.granted, coalesce(host(a.client_addr), ''), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND ((l.classid::int8 << 32) | l.objid::int8) = $1`, key)
	if err != nil {
		return fmt.Errorf("reading the lock of slot %s: %w", slot, err)
	}
	defer rows.Close()

	leader, standbys := "none: no instance holds the lock, so none reads the slot", 0
	for rows.Next() {
		var pid int32
		var granted bool
		var client string
		var started *time.Time
		if err := rows.Scan(&pid, &granted, &client, &started); err != nil {
			return fmt.Errorf("reading the lock of slot %s: %w", slot, err)
		}
		if !granted {
			standbys++
			continue
		}
		leader = fmt.Sprintf("server process %d", pid)
		if client != "" {
			leader += ", client " + client
		}
		if started != nil {
			leader += ", connected " + started.UTC().Format(time.RFC3339)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the lock of slot %s: %w", slot, err)
	}

	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "Slot lock (advisory lock %d)\n", key)
	fmt.Fprintf(w, "  leader\t%s\n", leader)
	fmt.Fprintf(w, "  standbys\t%d waiting\n", standbys)
	fmt.Fprintln(w)
	return w.Flush()
}

func printEvents(ctx context.Context, out io.Writer, pool *pgxpool.Pool) error {
	var count int64
	var oldest, newest *time.Time
	var newestID *string
	err := pool.QueryRow(ctx, `SELECT count(*), min(commit_time), max(commit_time), max(id) FROM civicbase.events`).
		Scan(&count, &oldest, &newest, &newestID)
	if err != nil {
		return fmt.Errorf("reading the event store (run civicbase migrate first?): %w", err)
	}
	fmt.Fprintf(out, "Events\n  stored  %d", count)
	if count > 0 {
		fmt.Fprintf(out, ", committed %s to %s, newest %s", oldest.UTC().Format(time.RFC3339), newest.UTC().Format(time.RFC3339), *newestID)
	}
	fmt.Fprint(out, "\n\n")
	return nil
}

// printGaps lists the recorded points before which events may be missing:
// accepted slot losses and the prune horizon.
func printGaps(ctx context.Context, out io.Writer, st *store.Store, slot string) error {
	pending, err := st.PendingGap(ctx, slot)
	if err != nil {
		return err
	}
	gaps, err := st.GapsAfter(ctx, "")
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "Gaps")
	if pending == nil && len(gaps) == 0 {
		fmt.Fprintln(w, "  none")
	}
	if pending != nil {
		fmt.Fprintf(w, "  slot lost\tgap %d, %s, after LSN %s: accepted, waiting for the service to create the new slot\n",
			pending.ID, pending.Detail, pending.LostAfter)
	}
	for _, g := range gaps {
		if g.Reason == store.GapEventsPruned {
			fmt.Fprintf(w, "  events pruned\tup to %s, committed up to %s\n", g.ResumeFrom, g.At.UTC().Format(time.RFC3339))
			continue
		}
		fmt.Fprintf(w, "  slot lost\tgap %d, %s: LSN %s to %s not captured; complete after %s since %s\n",
			g.ID, g.Detail, g.LostAfter, g.ResumeLSN, g.ResumeFrom, g.At.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	return w.Flush()
}

func printWebhooks(ctx context.Context, out io.Writer, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `SELECT w.id, w.url, w.active, coalesce(w.disabled_reason, ''), w.failing_since,
			count(d.id) FILTER (WHERE d.status = 'pending'), count(d.id) FILTER (WHERE d.status = 'dead'),
			min(d.created_at) FILTER (WHERE d.status = 'pending')
		FROM civicbase.webhooks w LEFT JOIN civicbase.deliveries d ON d.webhook_id = w.id
		GROUP BY w.id ORDER BY w.id`)
	if err != nil {
		return fmt.Errorf("reading webhooks: %w", err)
	}
	defer rows.Close()
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "Webhooks")
	fmt.Fprintln(w, "  ID\tHOST\tACTIVE\tPENDING\tOLDEST PENDING\tDEAD\tFAILING SINCE")
	n := 0
	for rows.Next() {
		var id, rawURL, reason string
		var active bool
		var failing, oldest *time.Time
		var pending, dead int64
		if err := rows.Scan(&id, &rawURL, &active, &reason, &failing, &pending, &dead, &oldest); err != nil {
			return fmt.Errorf("reading webhooks: %w", err)
		}
		n++
		state := yesNo(active)
		if !active && reason != "" {
			state = "no (" + reason + ")"
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%s\t%d\t%s\n", id, hostOf(rawURL), state, pending, ageOf(oldest), dead, timeOrDash(failing))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading webhooks: %w", err)
	}
	if n == 0 {
		fmt.Fprintln(w, "  (none registered)")
	}
	return w.Flush()
}

// hostOf shows only the host of an endpoint URL, since paths and queries
// can carry tokens.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Host
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func ageOf(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return time.Since(*t).Round(time.Second).String()
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func bytesOrUnknown(n *int64) string {
	if n == nil {
		return "unknown"
	}
	return humanBytes(*n)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
