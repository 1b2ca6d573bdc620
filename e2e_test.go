package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the civicbase command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "civicbase-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "civicbase")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

type process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	addr   string
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// startService runs `civicbase serve` against url with extra environment
// variables, and kills it when the test ends.
func startService(t *testing.T, url string, env ...string) *process {
	t.Helper()
	p := &process{output: &syncBuffer{}, addr: freeAddr(t)}
	p.cmd = exec.Command(binary(t), "serve")
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+url, "CIVICBASE_ADMIN_TOKEN=test-token-0123456789",
		"CIVICBASE_ADDR="+p.addr)
	p.cmd.Env = append(p.cmd.Env, env...)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "CIVICBASE_CONFIG=") }) {
		// Slot names are unique per server and the tests share one, so
		// each database gets its own slot, the same across restarts.
		path := filepath.Join(t.TempDir(), "civicbase.yaml")
		slot := slotName(url)
		// A short lease lets deliveries claimed by a killed instance come
		// back within seconds.
		// Frequent queue reads let /metrics show a new endpoint soon.
		cfg := "slot: " + slot + "\nwebhooks:\n  timeout: 2s\n  lease: 3s\n  queueMetricsInterval: 1s\n"
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		p.cmd.Env = append(p.cmd.Env, "CIVICBASE_CONFIG="+path)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_, _ = p.cmd.Process.Wait()
		if t.Failed() {
			t.Logf("service output:\n%s", p.output.String())
		}
	})
	return p
}

// slotName returns the slot that startService configures for the database
// at url.
func slotName(url string) string {
	return "slot_" + strings.NewReplacer("/", "", "?sslmode=disable", "").Replace(url[strings.LastIndex(url, "/"):])
}

func (p *process) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("service did not exit within %s; output:\n%s", timeout, p.output.String())
		return nil
	}
}

func countEvents(t *testing.T, pool *pgxpool.Pool) (total, distinct int) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT (instance_id, event))
		FROM civicbase.events`).Scan(&total, &distinct)
	if err != nil {
		return 0, 0 // the schema may not exist yet
	}
	return total, distinct
}

func TestServiceSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY, payload text)`)

	svc := startReady(t, url)

	const rows, perTxn = 50_000, 500
	writerDone := make(chan error, 1)
	go func() {
		for start := 0; start < rows; start += perTxn {
			_, err := pool.Exec(ctx, `INSERT INTO items SELECT g, md5(g::text) FROM generate_series($1::bigint, $2::bigint) g`,
				start, start+perTxn-1)
			if err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()

	waitUntil(t, 60*time.Second, "some events stored", func() bool { n, _ := countEvents(t, pool); return n > 5000 })
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGKILL))
	_ = svc.waitExit(t, 10*time.Second)
	killedAt, _ := countEvents(t, pool)
	require.Less(t, killedAt, rows, "the kill must land mid-workload")

	svc = startService(t, url)
	require.NoError(t, <-writerDone)
	waitUntil(t, 120*time.Second, "all events stored", func() bool { n, _ := countEvents(t, pool); return n >= rows })
	time.Sleep(500 * time.Millisecond) // a duplicate would show up now

	total, distinct := countEvents(t, pool)
	require.Equal(t, rows, total)
	require.Equal(t, rows, distinct)
	requireNoGaps(t, pool)
}

func TestServiceRejectsUnknownTable(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	cfgPath := filepath.Join(t.TempDir(), "civicbase.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("tables:\n  - name: public.nosuch\n"), 0o600))

	svc := startService(t, url, "CIVICBASE_CONFIG="+cfgPath)
	err := svc.waitExit(t, 30*time.Second)

	require.Error(t, err)
	require.Contains(t, svc.output.String(), `table \"public.nosuch\" not found in the database`)
}

func TestServiceRejectsMissingToken(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary(t), "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://127.0.0.1:1/x", "CIVICBASE_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()

	require.Error(t, err)
	require.Contains(t, string(out), "CIVICBASE_ADMIN_TOKEN is missing")
}

func TestServicePullAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newDatabase(t, `CREATE TABLE user_profiles (id text PRIMARY KEY, bio text)`)
	svc := startReady(t, url)

	_, err := pool.Exec(ctx, `INSERT INTO user_profiles VALUES ('p1', '<b>&'), ('p2', NULL), ('p3', 'x')`)
	require.NoError(t, err)
	var page struct {
		Events  []map[string]any `json:"events"`
		Next    string           `json:"next"`
		HasMore bool             `json:"hasMore"`
	}
	waitUntil(t, 10*time.Second, "events served", func() bool {
		page.Events = nil
		status := getJSON(t, "http://"+svc.addr+"/events?limit=2", "test-token-0123456789", &page)
		return status == 200 && len(page.Events) == 2
	})

	require.True(t, page.HasMore)
	require.Equal(t, "p1", page.Events[0]["instanceId"])
	require.Equal(t, map[string]any{"id": "p1", "bio": "<b>&"}, page.Events[0]["changes"])
	require.Equal(t, page.Events[1]["id"], page.Next)
	require.Equal(t, 200, getJSON(t, "http://"+svc.addr+"/events?after="+page.Next, "test-token-0123456789", &page))
	require.Len(t, page.Events, 1)
	require.Equal(t, "p3", page.Events[0]["instanceId"])
	require.False(t, page.HasMore)

	var failure map[string]map[string]any
	require.Equal(t, 401, getJSON(t, "http://"+svc.addr+"/events", "wrong-token", &failure))
	require.Equal(t, "invalid_token", failure["error"]["code"])
	require.Equal(t, 400, getJSON(t, "http://"+svc.addr+"/events?limit=abc", "test-token-0123456789", &failure))
	require.Contains(t, failure["error"]["message"], `"abc"`)
}
