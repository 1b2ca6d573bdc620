package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

// slotConfig writes a configuration file that names slot and returns the
// CIVICBASE_CONFIG setting for it, so that `civicbase recreate-slot` reads
// the same slot name as the service.
func slotConfig(t *testing.T, slot string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "civicbase.yaml")
	require.NoError(t, os.WriteFile(path, []byte("slot: "+slot+"\n"), 0o600))
	return "CIVICBASE_CONFIG=" + path
}

// recreateSlot runs `civicbase recreate-slot` and returns its output.
func recreateSlot(t *testing.T, url, configEnv string) string {
	t.Helper()
	cmd := exec.Command(binary(t), "recreate-slot")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url, configEnv)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "output: %s", out)
	return string(out)
}

// startUnready starts the service and waits until /readyz responds 503
// with a failing replication check that names the recovery command, and
// returns the check's detail.
func startUnready(t *testing.T, url string, env ...string) (*process, string) {
	t.Helper()
	svc := startService(t, url, env...)
	var detail string
	waitUntil(t, 60*time.Second, "/readyz 503 with the recovery steps", func() bool {
		code, body := getReadyz(svc.addr)
		for _, check := range body.Checks {
			if check.Name == "replication" && !check.OK {
				detail = check.Detail
			}
		}
		return code == http.StatusServiceUnavailable && strings.Contains(detail, "civicbase recreate-slot")
	})
	return svc, detail
}

// realtimeSession is an authenticated WebSocket session for the slot tests,
// which read resync_required messages next to events.
type realtimeSession struct {
	t    *testing.T
	conn *websocket.Conn
}

func openSession(t *testing.T, addr string) *realtimeSession {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/realtime", nil)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	s := &realtimeSession{t: t, conn: conn}
	require.NoError(t, conn.WriteJSON(map[string]any{"type": "authenticate", "token": "test-token-0123456789"}))
	require.Equal(t, "authenticated", s.next()["type"])
	return s
}

func (s *realtimeSession) subscribe(id, model, since string) {
	s.t.Helper()
	msg := map[string]any{"type": "subscribe", "id": id, "models": []string{model}}
	if since != "" {
		msg["since"] = since
	}
	require.NoError(s.t, s.conn.WriteJSON(msg))
}

func (s *realtimeSession) next() map[string]any {
	s.t.Helper()
	require.NoError(s.t, s.conn.SetReadDeadline(time.Now().Add(60*time.Second)))
	var msg map[string]any
	require.NoError(s.t, s.conn.ReadJSON(&msg))
	return msg
}

// nextType reads the next message and requires its type.
func (s *realtimeSession) nextType(want string) map[string]any {
	s.t.Helper()
	msg := s.next()
	require.Equal(s.t, want, msg["type"], "message %v", msg)
	return msg
}

// requireLoggedError checks that the service logged the lost slot at error
// level with the command that recovers it.
func requireLoggedError(t *testing.T, svc *process) {
	t.Helper()
	waitUntil(t, 30*time.Second, "lost slot logged", func() bool {
		return strings.Contains(svc.output.String(), `level=ERROR msg="replication slot lost;`)
	})
	for _, line := range strings.Split(svc.output.String(), "\n") {
		if strings.Contains(line, `level=ERROR msg="replication slot lost;`) {
			require.Contains(t, line, "run `civicbase recreate-slot` with this service's DATABASE_URL and CIVICBASE_CONFIG")
			return
		}
	}
}

// requireSlotLostResync checks that GET /events after an id before a slot
// loss returns 410 resync_required with the gap's resumeFrom.
func requireSlotLostResync(t *testing.T, addr, after, resumeFrom string) {
	t.Helper()
	var body struct {
		Error struct {
			Code, Reason, ResumeFrom string
		} `json:"error"`
	}
	require.Equal(t, http.StatusGone, getJSON(t, "http://"+addr+"/events?after="+after, "test-token-0123456789", &body))
	require.Equal(t, "resync_required", body.Error.Code)
	require.Equal(t, "slot_lost", body.Error.Reason)
	require.Equal(t, resumeFrom, body.Error.ResumeFrom)
}

func TestInvalidatedSlotEndToEnd(t *testing.T) {
	t.Parallel()
	c := pgtest.OwnCluster(t)
	ctx := context.Background()
	url := c.URL("postgres")
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE items (id int PRIMARY KEY); CREATE SCHEMA filler; CREATE TABLE filler.wal (body text)`)
	require.NoError(t, err)
	configEnv := slotConfig(t, "lost_slot")
	run := func(sql string) {
		t.Helper()
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}

	svc := startReady(t, url, configEnv)
	before := openSession(t, svc.addr)
	before.subscribe("s1", "Item", "")
	before.nextType("subscribed")
	run(`INSERT INTO items VALUES (1)`)
	first := before.nextType("create")["id"].(string)

	// With the service stopped, changes pile up and PostgreSQL invalidates
	// the slot, which may retain less than one WAL segment.
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, svc.waitExit(t, 30*time.Second))
	run(`INSERT INTO items VALUES (2)`) // lost with the slot
	run(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`)
	run(`SELECT pg_reload_conf()`)
	waitUntil(t, 60*time.Second, "slot invalidated", func() bool {
		run(`INSERT INTO filler.wal SELECT repeat('x', 1000) FROM generate_series(1, 1000)`)
		run(`SELECT pg_switch_wal()`)
		run(`CHECKPOINT`)
		var status string
		require.NoError(t, pool.QueryRow(ctx, `SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'`).Scan(&status))
		return status == "lost"
	})
	run(`ALTER SYSTEM RESET max_slot_wal_keep_size`)
	run(`SELECT pg_reload_conf()`)

	svc, detail := startUnready(t, url, configEnv)
	require.Contains(t, detail, "slot lost_slot was invalidated (wal_status lost)")
	require.Contains(t, detail, "run `civicbase recreate-slot`")
	requireLoggedError(t, svc)
	require.True(t, httpOK(svc.addr+"/healthz"), "the process stays up")
	var page struct {
		Events []map[string]any `json:"events"`
	}
	require.Equal(t, http.StatusOK, getJSON(t, "http://"+svc.addr+"/events", "test-token-0123456789", &page))
	require.Len(t, page.Events, 1, "stored events are still served")
	live := openSession(t, svc.addr)
	live.subscribe("s1", "Item", "")
	live.nextType("subscribed")

	out := recreateSlot(t, url, configEnv)
	require.Contains(t, out, "Accepted the loss of slot lost_slot (invalidated (wal_status lost))")
	require.Contains(t, out, "the newest stored event is "+first)
	waitUntil(t, 60*time.Second, "/readyz 200 after recreate-slot", func() bool { code, _ := getReadyz(svc.addr); return code == http.StatusOK })
	run(`INSERT INTO items VALUES (3)`)

	// A session that was live across the gap gets resync_required before
	// the next event.
	resync := live.nextType("resync_required")
	require.NotContains(t, resync, "id")
	require.Equal(t, "slot_lost", resync["reason"])
	resumeFrom := resync["resumeFrom"].(string)
	third := live.nextType("create")
	require.Equal(t, "3", third["instanceId"])
	require.Greater(t, resumeFrom, first)
	require.Less(t, resumeFrom, third["id"].(string))

	// A subscribe since an id before the gap gets resync_required, then
	// the events after resumeFrom.
	resumed := openSession(t, svc.addr)
	resumed.subscribe("s1", "Item", first)
	resync = resumed.nextType("resync_required")
	require.Equal(t, "s1", resync["id"])
	require.Equal(t, first, resync["since"])
	require.Equal(t, resumeFrom, resync["resumeFrom"])
	require.Equal(t, third["id"], resumed.nextType("create")["id"])
	resumed.nextType("subscribed")

	requireSlotLostResync(t, svc.addr, first, resumeFrom)
	require.Equal(t, http.StatusOK, getJSON(t, "http://"+svc.addr+"/events?after="+resumeFrom, "test-token-0123456789", &page))
	require.Len(t, page.Events, 1)
	require.Equal(t, third["id"], page.Events[0]["id"])

	// A normal resume after the gap gets no resync_required.
	normal := openSession(t, svc.addr)
	normal.subscribe("s1", "Item", third["id"].(string))
	normal.nextType("subscribed")
	run(`INSERT INTO items VALUES (4)`)
	require.Equal(t, "4", normal.nextType("create")["instanceId"])
}

func TestDroppedSlotEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	slot := fmt.Sprintf("dropped_%d", time.Now().UnixNano())
	configEnv := slotConfig(t, slot)
	svc := startReady(t, url, configEnv)
	_, err := pool.Exec(ctx, `INSERT INTO items VALUES (1)`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "event stored", func() bool { total, _ := countEvents(t, pool); return total == 1 })

	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, svc.waitExit(t, 30*time.Second))
	// The server may hold the slot for a moment after the process exits.
	waitUntil(t, 30*time.Second, "slot dropped", func() bool {
		_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
		return err == nil
	})
	svc, detail := startUnready(t, url, configEnv)

	require.Contains(t, detail, "slot "+slot+" does not exist, but events up to LSN")
	require.Contains(t, detail, "run `civicbase recreate-slot`")
	requireLoggedError(t, svc)
	require.Contains(t, getText(t, "http://"+svc.addr+"/metrics"), "\ncivicbase_cdc_slot_lost 1\n")
	var exists bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot).Scan(&exists))
	require.False(t, exists, "no slot is created over the gap")

	require.Contains(t, recreateSlot(t, url, configEnv), "Accepted the loss of slot "+slot+" (dropped)")
	waitUntil(t, 60*time.Second, "/readyz 200 after recreate-slot", func() bool { code, _ := getReadyz(svc.addr); return code == http.StatusOK })
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (2)`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "event stored from the new slot", func() bool { total, _ := countEvents(t, pool); return total == 2 })
	require.Contains(t, getText(t, "http://"+svc.addr+"/metrics"), "\ncivicbase_cdc_slot_lost 0\n")

	// The new slot starts at a stored position, so a restart finds it
	// where the service left it.
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, svc.waitExit(t, 30*time.Second))
	svc = startReady(t, url, configEnv)
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (3)`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "event stored after the restart", func() bool { total, _ := countEvents(t, pool); return total == 3 })
	var gaps int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM civicbase.gaps`).Scan(&gaps))
	require.Equal(t, 1, gaps, "only the accepted loss is recorded")
	require.NotContains(t, svc.output.String(), "level=ERROR")
}

// requireNoGaps checks that no slot loss was recorded in the database.
func requireNoGaps(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var gaps int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM civicbase.gaps`).Scan(&gaps))
	require.Zero(t, gaps, "slot losses recorded")
}

// requireAckStored checks that the slot's confirmed position is not past
// the position stored for it, which the service must store first.
func requireAckStored(t *testing.T, pool *pgxpool.Pool, slot string) pglogrepl.LSN {
	t.Helper()
	var confirmed, stored string
	ctx := context.Background()
	require.NoError(t, pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed))
	// Read after the slot, so that a position sent in between is stored.
	require.NoError(t, pool.QueryRow(ctx, `SELECT lsn::text FROM civicbase.checkpoints WHERE slot_name = $1`, slot).Scan(&stored))
	confirmedLSN, err := pglogrepl.ParseLSN(confirmed)
	require.NoError(t, err)
	storedLSN, err := pglogrepl.ParseLSN(stored)
	require.NoError(t, err)
	require.LessOrEqual(t, confirmedLSN, storedLSN, "slot %s is acknowledged past the stored position", slot)
	return confirmedLSN
}

func TestHandMadeSlotEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	slot := fmt.Sprintf("handmade_%d", time.Now().UnixNano())
	configEnv := slotConfig(t, slot)
	run := func(sql string, args ...any) {
		t.Helper()
		_, err := pool.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}
	svc := startReady(t, url, configEnv)
	run(`INSERT INTO items VALUES (1)`)
	waitUntil(t, 30*time.Second, "event stored", func() bool { total, _ := countEvents(t, pool); return total == 1 })
	var first string
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM civicbase.events`).Scan(&first))

	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, svc.waitExit(t, 30*time.Second))
	waitUntil(t, 30*time.Second, "slot dropped", func() bool {
		_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot)
		return err == nil
	})
	run(`INSERT INTO items VALUES (2)`) // lost: no slot holds it
	run(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	svc = startReady(t, url, configEnv)
	waitUntil(t, 30*time.Second, "moved slot logged", func() bool {
		return strings.Contains(svc.output.String(), `level=ERROR msg="replication slot moved past the position this service acknowledged;`)
	})
	run(`INSERT INTO items VALUES (3)`)
	waitUntil(t, 30*time.Second, "event after the gap stored", func() bool { total, _ := countEvents(t, pool); return total == 2 })

	require.Contains(t, svc.output.String(), "run `civicbase recreate-slot`")
	resumed := openSession(t, svc.addr)
	resumed.subscribe("s1", "Item", first)
	resync := resumed.nextType("resync_required")
	require.Equal(t, "slot_lost", resync["reason"])
	resumeFrom := resync["resumeFrom"].(string)
	third := resumed.nextType("create")
	require.Equal(t, "3", third["instanceId"])
	require.Greater(t, resumeFrom, first)
	require.Less(t, resumeFrom, third["id"].(string))
	requireSlotLostResync(t, svc.addr, first, resumeFrom)
	code, _ := getReadyz(svc.addr)
	require.Equal(t, http.StatusOK, code, "the service reads on after recording the gap")
}

// Restarts of an idle service, clean or with SIGKILL, record no gap,
// although the slot moves past the last event between them.
func TestIdleRestartsRecordNoGap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id int PRIMARY KEY); CREATE SCHEMA filler; CREATE TABLE filler.wal (body text)`)
	slot := slotName(url)
	svc := startReady(t, url)
	_, err := pool.Exec(ctx, `INSERT INTO items VALUES (1)`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "event stored", func() bool { total, _ := countEvents(t, pool); return total == 1 })

	for round, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGTERM, syscall.SIGKILL} {
		_, err := pool.Exec(ctx, `INSERT INTO filler.wal SELECT repeat('x', 100) FROM generate_series(1, 1000)`)
		require.NoError(t, err)
		var walNow string
		require.NoError(t, pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walNow))
		target, err := pglogrepl.ParseLSN(walNow)
		require.NoError(t, err)
		waitUntil(t, 30*time.Second, fmt.Sprintf("round %d: slot acknowledged past the unwatched writes", round), func() bool {
			return requireAckStored(t, pool, slot) >= target
		})
		require.NoError(t, svc.cmd.Process.Signal(sig))
		_ = svc.waitExit(t, 30*time.Second)
		svc = startReady(t, url)
	}
	_, err = pool.Exec(ctx, `INSERT INTO items VALUES (2)`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "event stored", func() bool { total, _ := countEvents(t, pool); return total == 2 })

	requireNoGaps(t, pool)
	require.NotContains(t, svc.output.String(), "level=ERROR")
}
