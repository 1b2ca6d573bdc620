package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// findChromium returns Debian's chromium binary, or "" when it is missing.
func findChromium() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if path, err := exec.LookPath("chromium"); err == nil {
		return path
	}
	return ""
}

func TestLivePageShowsInsertedRow(t *testing.T) {
	t.Parallel()
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium not found in /usr/bin or on PATH; install Debian's chromium package (.ci/run does)")
	}
	url, pool := newDatabase(t, `CREATE TABLE users (id int PRIMARY KEY, name text)`)
	// Development mode accepts a local webhook URL. Nothing listens on port
	// 1, so the endpoint's deliveries stay pending.
	svc := startReady(t, url, "CIVICBASE_DEV=true")
	registerWebhook(t, svc.addr, "http://127.0.0.1:1/hook")

	resp, err := http.Get("http://" + svc.addr + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self';")
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))

	allocatorOptions := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	}
	allocatorCtx, cancelAllocator := chromedp.NewExecAllocator(context.Background(), allocatorOptions...)
	defer cancelAllocator()
	browserCtx, cancelBrowser := chromedp.NewContext(allocatorCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browserCtx, 30*time.Second)
	defer cancel()

	err = chromedp.Do(ctx,
		chromedp.Navigate("http://"+svc.addr+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "test-token-0123456789"),
		chromedp.SetValue(chromedp.ID("models"), "User"),
		chromedp.Click(chromedp.ID("connect")),
		chromedp.Poll[chromedp.Void](`document.getElementById("status").textContent.startsWith("Subscribed")`,
			chromedp.WithPollingTimeout(10*time.Second)),
	)
	require.NoError(t, err, "page did not subscribe")
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
	require.NoError(t, err)
	require.Contains(t, status, "Subscribed to User")

	_, err = pool.Exec(ctx, `INSERT INTO users VALUES (4242, 'Grace Hopper')`)
	require.NoError(t, err)

	err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](
		`[...document.querySelectorAll("#events td.instance")].some(td => td.textContent === "4242")`,
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "page did not show the inserted row")

	instance, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#events tr:first-child td.instance")))
	require.NoError(t, err)
	require.Equal(t, "4242", instance)
	changes, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#events tr:first-child td.changes")))
	require.NoError(t, err)
	require.Contains(t, changes, "Grace Hopper")
	errorText, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("error")))
	require.NoError(t, err)
	require.Empty(t, errorText, "page shows an error")

	// The panel refreshes every 5 s, and the delivery of the inserted row
	// stays pending because its endpoint refuses connections.
	err = chromedp.Do(ctx, chromedp.Poll[chromedp.Void](
		`document.querySelector("#webhooks tr:first-child td:nth-child(4)")?.textContent === "1"`,
		chromedp.WithPollingTimeout(8*time.Second)))
	require.NoError(t, err, "webhook panel did not show one pending delivery")
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#webhooks tr:first-child td")].map(td => td.textContent)`))
	require.NoError(t, err)
	require.Equal(t, []string{"http://127.0.0.1:1/hook", "active", "1", "0"}, cells[1:])

	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 selects PNG
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "livepage.png")
	require.NoError(t, os.WriteFile(path, screenshot, 0o644))
	t.Logf("screenshot: %s", path)
}
