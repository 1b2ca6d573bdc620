package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/nodetest"
)

// installNodeClient installs the ws package and copies client.js from
// testdata into a temporary directory.
func installNodeClient(t *testing.T) string {
	t.Helper()
	dir := nodetest.Install(t, "testdata")
	data, err := os.ReadFile(filepath.Join("testdata", "client.js"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.js"), data, 0o644))
	return dir
}

// TestNodeClientReceivesOwnRows runs the ws package from npm as an outside
// client and checks that it receives the same bytes as a gorilla client.
func TestNodeClientReceivesOwnRows(t *testing.T) {
	t.Parallel()
	dir := installNodeClient(t)
	b := setup(t, testConfig())
	admin := dial(t, b.url)
	admin.authenticate(adminToken)
	admin.subscribe("s1", []string{"UserProfile"}, nil)

	const want = 5 // authenticated, subscribed and three events
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "client.js", b.url+"/v1/realtime", ownerToken(t, 1), "UserProfile", "5")
	node.Dir = dir
	var stderr bytes.Buffer
	node.Stderr = &stderr
	stdout, err := node.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, node.Start())
	lines := bufio.NewScanner(stdout)

	var got []string
	for len(got) < 2 && lines.Scan() {
		got = append(got, lines.Text())
	}
	require.Len(t, got, 2, "node client output before subscribing; stderr:\n%s", &stderr)
	require.JSONEq(t, `{"type":"authenticated"}`, got[0])
	require.JSONEq(t, `{"type":"subscribed","id":"s1","models":["UserProfile"],"events":[],"liveFrom":null}`, got[1])

	created := b.rowEvent("UserProfile", "data.created", `{"id":1,"owner_id":1,"name":"<é>"}`, "")
	updated := b.rowEvent("UserProfile", "data.updated", `{"id":1,"owner_id":1,"name":"b"}`, `{"name":"<é>"}`)
	deleted := b.rowEvent("UserProfile", "data.deleted", `{}`, `{"id":1,"owner_id":1,"name":"b"}`)
	b.write(t, b.rowEvent("UserProfile", "data.created", `{"id":2,"owner_id":2}`, ""), created,
		b.rowEvent("UserProfile", "data.updated", `{"owner_id":2}`, `{"owner_id":1}`), updated, deleted)

	sent := map[string]string{}
	for range 5 {
		m := admin.read()
		sent[m.ID] = string(m.raw)
	}
	for lines.Scan() {
		got = append(got, lines.Text())
	}
	require.NoError(t, node.Wait(), "node client stderr:\n%s", &stderr)
	require.Len(t, got, want)
	for i, e := range []string{created.ID, updated.ID, deleted.ID} {
		var m struct{ ID string }
		require.NoError(t, json.Unmarshal([]byte(got[2+i]), &m))
		require.Equal(t, e, m.ID)
		require.Equal(t, sent[e], strings.TrimSpace(got[2+i]), "event %s", e)
	}
}
