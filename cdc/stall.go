package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// errStalled is the error that ends a session the stall watchdog stopped.
// Run then reconnects as after any other session failure.
var errStalled = errors.New("replication stream stalled")

// stalled reports whether a session should be ended: the server's WAL
// position is ahead of the durable position, and nothing was received or
// stored since lastProgress for at least threshold.
func stalled(lastProgress, now time.Time, serverWAL, durable pglogrepl.LSN, threshold time.Duration) bool {
	return serverWAL > durable && now.Sub(lastProgress) >= threshold
}

// watchdog ends the session when it has stalled, and requests a keepalive
// once the silence reaches half the threshold, so that a live server replies
// before the threshold passes.
//
// A store write in flight does not count as a stall, because writeTimeout
// already bounds each write. An idle session does not stall either, because
// the keepalives that its status updates request count as progress, and the
// position they show is stored and acknowledged within a minute.
//
// NOTE: the watchdog only sees the server's position through messages, so
// a connection that goes silent while the session is idle and caught up is
// not detected here; it ends when a status update fails to send.
func (s *session) watchdog(ctx context.Context, now time.Time) error {
	if s.progressed {
		s.progressed, s.pinged = false, false
		s.lastProgress = now
		return nil
	}
	threshold := s.r.cfg.StallTimeout
	if s.w.inflight == 0 && stalled(s.lastProgress, now, s.serverWAL, s.durable, threshold) {
		stalledFor := now.Sub(s.lastProgress).Round(time.Second)
		s.r.log.WarnContext(ctx, "replication stalled; ending the session to reconnect",
			"slot", s.r.cfg.Slot, "lsn", s.durable, "server_lsn", s.serverWAL, "stalled_for", stalledFor)
		return fmt.Errorf("%w on slot %s: nothing received or stored for %s while the server's WAL position %s is ahead of the stored position %s",
			errStalled, s.r.cfg.Slot, stalledFor, s.serverWAL, s.durable)
	}
	if !s.pinged && now.Sub(s.lastProgress) >= threshold/2 {
		s.pinged = true
		return s.sendStatus(ctx, true)
	}
	return nil
}

// watchdogDeadline returns when the watchdog next needs to run, or the zero
// time when no future run is due. Past times are never returned, so a
// silent but healthy session does not spin.
func (s *session) watchdogDeadline(now time.Time) time.Time {
	threshold := s.r.cfg.StallTimeout
	if ping := s.lastProgress.Add(threshold / 2); !s.pinged && ping.After(now) {
		return ping
	}
	if end := s.lastProgress.Add(threshold); end.After(now) {
		return end
	}
	return time.Time{}
}
