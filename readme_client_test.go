package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/nodetest"
)

// readmeClient returns the JavaScript client of the README with its url and
// token set.
func readmeClient(t *testing.T, url, token string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)### A client with reconnect and resume.*?```js\n(.*?)```").FindSubmatch(readme)
	require.NotNil(t, blocks, "README has no js block under \"A client with reconnect and resume\"")
	code := string(blocks[1])
	const firstLine = `const url = "ws://127.0.0.1:8080/v1/realtime", token = "<admin token>";`
	require.True(t, strings.HasPrefix(code, firstLine+"\n"), "the client's first line changed:\n%s", code)
	return fmt.Sprintf("const url = %q, token = %q;\n", url, token) + strings.TrimPrefix(code, firstLine+"\n")
}

// TestReadmeClientResumes runs the README's client under Node.js, kills the
// service, writes rows while it is down and restarts it on the same address:
// the client prints every row once, in order.
func TestReadmeClientResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := nodetest.Install(t, filepath.Join("hub", "testdata"))
	url, pool := newDatabase(t, `CREATE TABLE user_profiles (id int PRIMARY KEY, name text)`)
	svc := startReady(t, url)
	script := readmeClient(t, "ws://"+svc.addr+"/v1/realtime", "test-token-0123456789")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.js"), []byte(script), 0o644))

	nodeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	node := exec.CommandContext(nodeCtx, "node", "client.js")
	node.Dir = dir
	var stderr bytes.Buffer
	node.Stderr = &stderr
	stdout, err := node.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, node.Start())
	t.Cleanup(func() {
		cancel()
		_ = node.Wait()
	})
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	// next returns the client's next line, skipping probe rows.
	next := func() string {
		for {
			select {
			case line, ok := <-lines:
				require.True(t, ok, "node exited; stderr:\n%s", &stderr)
				if !strings.HasPrefix(line, "create UserProfile -") {
					return line
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("no output from the README client in 60s; stderr:\n%s", &stderr)
				return ""
			}
		}
	}
	insert := func(from, to int) {
		for id := from; id <= to; id++ {
			_, err := pool.Exec(ctx, `INSERT INTO user_profiles VALUES ($1, $2)`, id, fmt.Sprintf("user %d", id))
			require.NoError(t, err)
		}
	}
	wantRow := func(id int) string {
		return fmt.Sprintf(`create UserProfile %d {"id":%d,"name":"user %d"}`, id, id, id)
	}

	// The client subscribes without since at first, so rows count only once
	// the subscription is live: write probe rows until one arrives.
	deadline := time.Now().Add(60 * time.Second)
probing:
	for probe := -1; ; probe-- {
		require.True(t, time.Now().Before(deadline), "no probe row reached the client; stderr:\n%s", &stderr)
		insert(probe, probe)
		select {
		case line := <-lines:
			require.True(t, strings.HasPrefix(line, "create UserProfile -"), "unexpected line %q", line)
			break probing
		case <-time.After(500 * time.Millisecond):
		}
	}
	insert(2, 3)

	var got []string
	for range 2 {
		got = append(got, next())
	}
	require.NoError(t, svc.cmd.Process.Kill())
	_ = svc.waitExit(t, 20*time.Second)
	insert(4, 8)

	restarted := startService(t, url, "CIVICBASE_ADDR="+svc.addr)
	restarted.addr = svc.addr
	waitUntil(t, 30*time.Second, "restarted service ready", func() bool { return httpOK(restarted.addr + "/readyz") })
	for range 5 {
		got = append(got, next())
	}
	insert(9, 10)
	for range 2 {
		got = append(got, next())
	}

	for i, line := range got {
		require.Equal(t, wantRow(i+2), line, "line %d", i)
	}
	select {
	case extra := <-lines:
		t.Fatalf("the client printed a row twice or an unexpected line: %q", extra)
	case <-time.After(time.Second):
	}
}

// TestReadmeClientSurvivesServerDown runs the README's client against an
// address where nothing listens: it keeps retrying instead of exiting.
func TestReadmeClientSurvivesServerDown(t *testing.T) {
	t.Parallel()
	dir := nodetest.Install(t, filepath.Join("hub", "testdata"))
	addr := freeAddr(t) // nothing listens there
	script := readmeClient(t, "ws://"+addr+"/v1/realtime", "test-token-0123456789")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.js"), []byte(script), 0o644))

	node := exec.Command("node", "client.js")
	node.Dir = dir
	var stderr bytes.Buffer
	node.Stderr = &stderr
	require.NoError(t, node.Start())
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	t.Cleanup(func() {
		_ = node.Process.Kill()
		<-exited
	})
	select {
	case err := <-exited:
		exited <- err
		t.Fatalf("the README client exited while the service was down (%v); stderr:\n%s", err, &stderr)
	case <-time.After(3 * time.Second):
	}
}
