package cdc

import (
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/stretchr/testify/require"
)

func TestStalledDecision(t *testing.T) {
	t.Parallel()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const threshold = 2 * time.Minute
	tests := []struct {
		name      string
		silence   time.Duration
		serverWAL pglogrepl.LSN
		durable   pglogrepl.LSN
		want      bool
	}{
		{"AheadPastThreshold", 3 * time.Minute, 200, 100, true},
		{"AheadAtThreshold", threshold, 200, 100, true},
		{"AheadBeforeThreshold", threshold - time.Second, 200, 100, false},
		{"CaughtUpLongSilence", time.Hour, 100, 100, false},
		{"DurableAheadOfServer", time.Hour, 100, 200, false},
		{"NoServerPositionYet", time.Hour, 0, 100, false},
		{"JustProgressed", 0, 200, 100, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := stalled(start, start.Add(tt.silence), tt.serverWAL, tt.durable, threshold)
			require.Equal(t, tt.want, got)
		})
	}
}
