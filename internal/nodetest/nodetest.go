// Package nodetest installs the npm packages that tests run under Node.js.
package nodetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// npmOffline lists npm error codes that mean the registry is unreachable.
var npmOffline = []string{"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH"}

// Install copies package.json and package-lock.json from srcDir into a
// temporary directory, runs npm ci there and returns the directory. It skips
// the test when node or npm is missing or the npm registry is unreachable.
func Install(t *testing.T, srcDir string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping the Node.js test: %s is not installed", tool)
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(srcDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		for _, code := range npmOffline {
			if bytes.Contains(out, []byte(code)) {
				t.Skipf("skipping the Node.js test: the npm registry is unreachable (%s):\n%s", code, out)
			}
		}
		t.Fatalf("npm ci failed: %v\n%s", err, out)
	}
	return dir
}
