package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/civicbase/civicbase/hub"
	"github.com/civicbase/civicbase/internal/authlimit"
	"github.com/civicbase/civicbase/internal/pgtest"
	"github.com/civicbase/civicbase/sql"
	"github.com/civicbase/civicbase/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	adminToken = "admin-token"
	jwtSecret  = "jwt-secret-for-tests-0123456789"
	// waitTimeout bounds every wait of a test.
	waitTimeout = 5 * time.Second
)

// testBundle is one database with a hub serving it over httptest.
type testBundle struct {
	dbURL  string
	writer *store.Store // a store of its own, so hubs are woken by NOTIFY
	nextID *atomic.Int64
	hub    *hub.Hub
	url    string
	stop   func() // stops the hub's Run and waits for it
}

func testConfig() hub.Config {
	return hub.Config{
		AdminToken: adminToken,
		JWTSecret:  jwtSecret,
		Catalog: func(context.Context) ([]string, []string, error) {
			return []string{"UserProfile", "Project"}, []string{"user.created"}, nil
		},
		// Long enough that tests see events only through LISTEN/NOTIFY.
		PollInterval: time.Minute,
		// Tests connect from one address and present many wrong tokens in
		// parallel. The limit tests set a limiter of their own.
		AuthLimiter: authlimit.New(authlimit.Config{Burst: 1000}, nil),
	}
}

func setup(t *testing.T, cfg hub.Config) *testBundle {
	t.Helper()
	return setupWith(t, cfg, nil)
}

// setupWith is setup with connState set as the http.Server.ConnState hook
// of the hub's server.
func setupWith(t *testing.T, cfg hub.Config, connState func(net.Conn, http.ConnState)) *testBundle {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewDB(t)
	pool := newPool(t, dbURL)
	require.NoError(t, sql.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))))

	b := &testBundle{dbURL: dbURL, writer: store.New(pool), nextID: new(atomic.Int64)}
	b.hub, b.url, b.stop = startHubWith(t, dbURL, cfg, connState)
	return b
}

func newPool(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// startHub runs a hub with a pool of its own behind an httptest server.
func startHub(t *testing.T, dbURL string, cfg hub.Config) (*hub.Hub, string, func()) {
	t.Helper()
	return startHubWith(t, dbURL, cfg, nil)
}

func startHubWith(t *testing.T, dbURL string, cfg hub.Config, connState func(net.Conn, http.ConnState)) (*hub.Hub, string, func()) {
	t.Helper()
	pool := newPool(t, dbURL)
	h := hub.New(cfg, store.New(pool), pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = connState
	srv.Start()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("hub did not stop within 15s")
		}
	}
	t.Cleanup(stop)
	return h, "ws" + strings.TrimPrefix(srv.URL, "http"), stop
}

// event builds a stored event with the next id of this test. Ids grow in
// the order events are built, so tests write them from one goroutine.
func (b *testBundle) event(model, name, changes string) store.Event {
	n := b.nextID.Add(1)
	id := fmt.Sprintf("evt_%026x", n)
	instance := fmt.Sprint(n)
	commit := time.Unix(1700000000+n, 0).UTC()
	lsn := pglogrepl.LSN(0x16B3748 + n)
	old := ""
	if name == "data.updated" {
		old = `,"old":{"name":"before"}`
	}
	payload := fmt.Sprintf(`{"id":%q,"event":%q,"model":%q,"table":"public.items","instanceId":%q,"changes":%s%s,"timestamp":%d,"commitTime":%q,"lsn":%q,"txid":%d}`,
		id, name, model, instance, changes, old, commit.Unix(), commit.Format("2006-01-02T15:04:05.000000Z"), lsn, n)
	return store.Event{
		ID: id, Event: name, Model: model, Table: "public.items", InstanceID: &instance,
		CommitLSN: lsn, CommitTime: commit, Txid: uint32(n), Payload: []byte(payload),
	}
}

func (b *testBundle) write(t *testing.T, events ...store.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, b.writer.Write(ctx, events, nil))
}

// wsClient is a gorilla/websocket client of a hub.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dial(t *testing.T, url string) *wsClient {
	t.Helper()
	return dialWith(t, websocket.DefaultDialer, url)
}

func dialWith(t *testing.T, dialer *websocket.Dialer, url string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, resp, err := dialer.DialContext(ctx, url+"/v1/realtime", nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

// message is any server message; raw keeps its bytes.
type message struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Event    string          `json:"event"`
	Model    string          `json:"model"`
	Code     string          `json:"code"`
	Message  string          `json:"message"`
	LiveFrom *string         `json:"liveFrom"`
	Models   []string        `json:"models"`
	Events   []string        `json:"events"`
	Changes  json.RawMessage `json:"changes"`
	Old      json.RawMessage `json:"old"`
	raw      []byte
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(waitTimeout)))
	require.NoError(c.t, c.conn.WriteJSON(v))
}

func (c *wsClient) sendFrame(messageType int, data []byte) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(waitTimeout)))
	require.NoError(c.t, c.conn.WriteMessage(messageType, data))
}

func (c *wsClient) read() message {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	_, data, err := c.conn.ReadMessage()
	require.NoError(c.t, err)
	var m message
	require.NoError(c.t, json.Unmarshal(data, &m), "message %s", data)
	m.raw = data
	return m
}

// readType reads the next message and requires its type.
func (c *wsClient) readType(want string) message {
	c.t.Helper()
	m := c.read()
	require.Equal(c.t, want, m.Type, "message %s", m.raw)
	return m
}

// readClose reads until the server closes the connection and returns the
// close frame, and the event messages read before it.
func (c *wsClient) readClose() (*websocket.CloseError, []message) {
	c.t.Helper()
	var events []message
	for {
		require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			var closeErr *websocket.CloseError
			require.True(c.t, errors.As(err, &closeErr), "expected a close frame, got %v", err)
			return closeErr, events
		}
		var m message
		require.NoError(c.t, json.Unmarshal(data, &m))
		m.raw = data
		events = append(events, m)
	}
}

func (c *wsClient) authenticate(token string) {
	c.t.Helper()
	c.send(map[string]string{"type": "authenticate", "token": token})
	c.readType("authenticated")
}

// subscribe subscribes without since and returns the subscribed reply.
func (c *wsClient) subscribe(id string, models, events []string) message {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "id": id, "models": models, "events": events})
	m := c.readType("subscribed")
	require.Equal(c.t, id, m.ID)
	return m
}
