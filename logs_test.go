package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestServiceLogsJSON(t *testing.T) {
	t.Parallel()
	url, _ := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY)`)
	svc := startReady(t, url, "CIVICBASE_LOG_FORMAT=json")
	require.NoError(t, svc.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, svc.waitExit(t, 30*time.Second))

	output := strings.TrimSpace(svc.output.String())
	require.NotEmpty(t, output)
	var messages []string
	for i, line := range strings.Split(output, "\n") {
		var record map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &record), "line %d is not JSON: %s", i+1, line)
		require.IsType(t, "", record["msg"], "line %d has no msg: %s", i+1, line)
		require.IsType(t, "", record["level"], "line %d has no level: %s", i+1, line)
		messages = append(messages, record["msg"].(string))
	}
	require.Contains(t, messages, "replication started")
	require.Contains(t, messages, "shutdown complete")
}

func TestServiceRejectsBadLogSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, env, want string
	}{
		{"Format", "CIVICBASE_LOG_FORMAT=xml", `CIVICBASE_LOG_FORMAT="xml" is not a log format; use text or json`},
		{"Level", "CIVICBASE_LOG_LEVEL=verbose", `CIVICBASE_LOG_LEVEL="verbose" is not a log level; use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary(t), "serve")
			cmd.Env = append(os.Environ(), tt.env)
			out, err := cmd.CombinedOutput()

			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			require.Equal(t, 1, exit.ExitCode())
			require.Contains(t, string(out), tt.want)
		})
	}
}

func TestNewLoggerLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	env := map[string]string{"CIVICBASE_LOG_FORMAT": "json", "CIVICBASE_LOG_LEVEL": "warn"}
	log, err := newLogger(&buf, func(k string) string { return env[k] })
	require.NoError(t, err)

	log.Info("hidden")
	log.Warn("shown", "slot", "s1")

	var record map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &record))
	require.Equal(t, "shown", record["msg"])
	require.Equal(t, "WARN", record["level"])
	require.Equal(t, "s1", record["slot"])
}
