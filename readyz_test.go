package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/pgtest"
)

type readyzBody struct {
	Status string `json:"status"`
	Role   string `json:"role"`
	Checks []struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

// getReadyz returns the status code and body of GET /readyz, or 0 when the
// request fails.
func getReadyz(addr string) (int, readyzBody) {
	var body readyzBody
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, body
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, body
	}
	return resp.StatusCode, body
}

func TestReadyzFollowsPostgresRestart(t *testing.T) {
	t.Parallel()
	c := pgtest.OwnCluster(t)
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, c.URL("postgres"))
	require.NoError(t, err)
	_, err = admin.Exec(ctx, `CREATE DATABASE readyz`)
	admin.Close()
	require.NoError(t, err)
	pool, err := pgxpool.New(ctx, c.URL("readyz"))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY)`)
	pool.Close()
	require.NoError(t, err)
	svc := startService(t, c.URL("readyz"))
	waitUntil(t, 30*time.Second, "/readyz 200 after start", func() bool { code, _ := getReadyz(svc.addr); return code == 200 })

	require.NoError(t, c.StopServer(ctx, "fast"))
	var body readyzBody
	waitUntil(t, 30*time.Second, "/readyz 503 with Postgres stopped", func() bool {
		var code int
		code, body = getReadyz(svc.addr)
		return code == 503
	})
	require.Equal(t, "unready", body.Status)
	failing := map[string]string{}
	for _, check := range body.Checks {
		if !check.OK {
			failing[check.Name] = check.Detail
		}
	}
	require.NotEmpty(t, failing, "a 503 body must name a failing check: %+v", body)
	for name, detail := range failing {
		require.Contains(t, []string{"database", "migrations", "replication"}, name)
		require.NotEmpty(t, detail, "check %s has no detail", name)
	}
	_, databaseDown := failing["database"]
	_, replicationDown := failing["replication"]
	require.True(t, databaseDown || replicationDown, "failing checks %v name neither database nor replication", failing)

	require.NoError(t, c.StartServer(ctx))
	// The reader retries with backoff of up to 30 s.
	waitUntil(t, 60*time.Second, "/readyz 200 after Postgres restart", func() bool { code, _ := getReadyz(svc.addr); return code == 200 })
}
