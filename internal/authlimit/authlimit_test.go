package authlimit_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/internal/authlimit"
)

// fail records n failed attempts from addr, each of which must be allowed.
func fail(t *testing.T, l *authlimit.Limiter, addr netip.Addr, n int) {
	t.Helper()
	for i := range n {
		_, ok := l.Begin(addr)
		require.True(t, ok, "attempt %d of %s", i+1, addr)
		l.End(addr, false)
	}
}

func TestLimiterBlocksAfterBurst(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	l := authlimit.New(authlimit.Config{Burst: 3, Interval: time.Hour}, slog.New(slog.NewTextHandler(&logs, nil)))
	addr := netip.MustParseAddr("192.0.2.1")

	fail(t, l, addr, 3)
	retryAfter, ok := l.Begin(addr)

	require.False(t, ok)
	require.Greater(t, retryAfter, 59*time.Minute)
	require.LessOrEqual(t, retryAfter, time.Hour)
	require.Contains(t, logs.String(), "remote_addr=192.0.2.1/32")

	_, ok = l.Begin(netip.MustParseAddr("192.0.2.2"))
	require.True(t, ok, "another address keeps its attempts")
}

func TestLimiterSuccessTakesNoAttempt(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 2, Interval: time.Hour}, nil)
	addr := netip.MustParseAddr("192.0.2.1")

	for range 10 {
		_, ok := l.Begin(addr)
		require.True(t, ok)
		l.End(addr, true)
	}
	fail(t, l, addr, 2)

	_, ok := l.Begin(addr)
	require.False(t, ok)
}

func TestLimiterRefills(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 1, Interval: 100 * time.Millisecond}, nil)
	addr := netip.MustParseAddr("192.0.2.1")
	fail(t, l, addr, 1)
	_, ok := l.Begin(addr)
	require.False(t, ok)

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok = l.Begin(addr); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	require.True(t, ok, "no attempt allowed within 10s of a 100ms interval")
}

// Attempts in progress count as taken, so concurrent guesses cannot get
// past the burst before the first of them fails.
func TestLimiterCountsPendingAttempts(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 5, Interval: time.Hour}, nil)
	addr := netip.MustParseAddr("192.0.2.1")

	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, ok := l.Begin(addr); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	require.Equal(t, 5, allowed)
}

func TestLimiterGroupsIPv6By64(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 2, Interval: time.Hour}, nil)

	fail(t, l, netip.MustParseAddr("2001:db8:1:2::1"), 1)
	fail(t, l, netip.MustParseAddr("2001:db8:1:2:ffff::9"), 1)

	_, ok := l.Begin(netip.MustParseAddr("2001:db8:1:2::77"))
	require.False(t, ok, "addresses in one /64 share attempts")
	_, ok = l.Begin(netip.MustParseAddr("2001:db8:1:3::1"))
	require.True(t, ok, "another /64 has its own")
}

func TestLimiterMapsIPv4InIPv6(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 1, Interval: time.Hour}, nil)

	fail(t, l, netip.MustParseAddr("::ffff:192.0.2.1"), 1)

	_, ok := l.Begin(netip.MustParseAddr("192.0.2.1"))
	require.False(t, ok)
}

func TestLimiterForgetsPastMaxClients(t *testing.T) {
	t.Parallel()
	l := authlimit.New(authlimit.Config{Burst: 1, Interval: time.Hour, MaxClients: 10}, nil)

	for i := range 100 {
		fail(t, l, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 1)
	}

	require.Equal(t, 10, l.Tracked())
}

func TestNilLimiterAllowsAll(t *testing.T) {
	t.Parallel()
	var l *authlimit.Limiter
	addr := netip.MustParseAddr("192.0.2.1")

	for range 100 {
		_, ok := l.Begin(addr)
		require.True(t, ok)
		l.End(addr, false)
	}
}

func TestAddrFromRemote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		remote string
		want   string
	}{
		{"192.0.2.1:52100", "192.0.2.1"},
		{"[2001:db8::1]:52100", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"pipe", "invalid IP"},
		{"", "invalid IP"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, authlimit.AddrFromRemote(tt.remote).String(), tt.remote)
	}
}
