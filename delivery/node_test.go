package delivery

// TestNodeVerifiesDeliveries checks deliveries signed here with JavaScript
// receivers: the standardwebhooks npm package for the headers, and
// JSON.stringify of the parsed body for the body's signature member. It skips
// when node or npm is missing or the npm registry cannot be reached.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// nodeCase is one delivery for testdata/verify.mjs to check.
type nodeCase struct {
	Name    string            `json:"name"`
	Secret  string            `json:"secret"`
	Raw     bool              `json:"raw"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"` // base64
}

// nodeResult is the outcome of one case: "ok" or the failure of each check.
type nodeResult struct {
	Name   string `json:"name"`
	Header string `json:"header"`
	Body   string `json:"body"`
}

func TestNodeVerifiesDeliveries(t *testing.T) {
	t.Parallel()

	dir := installNodeHelper(t)
	generated, err := GenerateSecret()
	require.NoError(t, err)
	previous, err := GenerateSecret()
	require.NoError(t, err)
	secrets := []struct {
		kind   string
		secret Secret
		raw    bool
	}{
		{kind: "Whsec", secret: generated},
		{kind: "Raw", secret: mustSecret(t, "raw-secret-0123456789-abcdef"), raw: true},
		{kind: "RawMultibyte", secret: mustSecret(t, "ключ-секрет-😀-key"), raw: true},
	}

	var cases []nodeCase
	for _, p := range hardPayloads(t) {
		for _, s := range secrets {
			cases = append(cases, newNodeCase(t, p.name+"/"+s.kind, s.secret, s.raw, p.payload, s.secret))
		}
		// During a rotation the header carries entries for the new and the
		// previous secret, and the body member is signed with the new one.
		cases = append(cases, newNodeCase(t, p.name+"/RotationNew", generated, false, p.payload, generated, previous))
	}
	results := runNodeHelper(t, dir, cases)
	require.Len(t, results, len(cases))
	for i, got := range results {
		require.Equal(t, cases[i].Name, got.Name)
		require.Equal(t, "ok", got.Header, "case %s: header check", got.Name)
		require.Equal(t, "ok", got.Body, "case %s: body check", got.Name)
	}

	// A receiver that still holds the previous secret accepts the header
	// through its second entry. The body member, signed with the new secret
	// only, does not match.
	rotation := newNodeCase(t, "RotationPrevious", previous, false, []byte(`{"a":1}`), generated, previous)
	results = runNodeHelper(t, dir, []nodeCase{rotation})
	require.Len(t, results, 1)
	require.Equal(t, "ok", results[0].Header)
	require.Contains(t, results[0].Body, "expected sha256=")
}

// newNodeCase signs payload as a delivery with secrets, the first of which
// also signs the body member, for a receiver that holds the verifier secret.
func newNodeCase(t *testing.T, name string, verifier Secret, raw bool, payload []byte, secrets ...Secret) nodeCase {
	t.Helper()
	body, err := SignBody(payload, secrets[0])
	require.NoError(t, err)
	id := "evt_" + name
	now := time.Now()
	return nodeCase{
		Name:   name,
		Secret: verifier.Reveal(),
		Raw:    raw,
		Headers: map[string]string{
			"webhook-id":        id,
			"webhook-timestamp": strconv.FormatInt(now.Unix(), 10),
			"webhook-signature": Sign(id, now, body, secrets...),
		},
		Body: base64.StdEncoding.EncodeToString(body),
	}
}

// installNodeHelper copies testdata's package files and verify.mjs to a temp
// folder and installs the pinned standardwebhooks package there with npm ci.
func installNodeHelper(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found in PATH", tool)
		}
	}
	dir := t.TempDir()
	for _, name := range []string{"package.json", "package-lock.json", "verify.mjs"} {
		content, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), content, 0o600))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil && isNetworkFailure(out) {
		t.Skipf("skipping: npm ci could not reach the npm registry: %s", lastLine(out))
	}
	require.NoError(t, err, "npm ci failed:\n%s", out)
	return dir
}

// isNetworkFailure reports whether npm's output shows that the registry could
// not be reached, as opposed to a failed install.
func isNetworkFailure(out []byte) bool {
	for _, code := range []string{"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
		"ENETUNREACH", "EHOSTUNREACH", "network request"} {
		if bytes.Contains(out, []byte(code)) {
			return true
		}
	}
	return false
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// runNodeHelper runs verify.mjs on cases and returns its results.
func runNodeHelper(t *testing.T, dir string, cases []nodeCase) []nodeResult {
	t.Helper()
	input, err := json.Marshal(cases)
	require.NoError(t, err)
	inputPath := filepath.Join(t.TempDir(), "cases.json")
	require.NoError(t, os.WriteFile(inputPath, input, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "verify.mjs", inputPath)
	cmd.Dir = dir
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		t.Fatalf("node verify.mjs failed: %v\n%s", err, exitErr.Stderr)
	}
	require.NoError(t, err)

	var results []nodeResult
	decoder := json.NewDecoder(bytes.NewReader(out))
	for decoder.More() {
		var r nodeResult
		require.NoError(t, decoder.Decode(&r), "reading the output of verify.mjs")
		results = append(results, r)
	}
	return results
}
