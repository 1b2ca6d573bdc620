// Package httpapi serves the REST API, health checks and metrics on fiber,
// behind the one net/http server that also carries the WebSocket hub.
package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/civicbase/civicbase/config"
	"github.com/civicbase/civicbase/delivery"
	"github.com/civicbase/civicbase/internal/authlimit"
	"github.com/civicbase/civicbase/store"
)

// Limits of one request. fiber applies its copies of these only when it runs
// its own listener, so limitRequests enforces them for requests that reach
// fiber through the net/http adaptor.
const (
	// bodyLimit is the maximum request body in bytes. API bodies are small
	// JSON documents such as a webhook registration.
	bodyLimit = 1 << 20
	// readTimeout bounds reading one request, headers and body.
	readTimeout = 15 * time.Second
	// writeTimeout bounds writing one response, which for /events is at most
	// maxLimit payloads.
	writeTimeout = 30 * time.Second
	// readHeaderTimeout bounds reading the request line and headers, so a
	// client that sends headers slowly cannot hold a connection open.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections that stay unused.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds the request line plus headers that net/http
	// reads at all, which for this API are a bearer token and a few
	// standard headers. Past headerLimit, limitHeaders replies with JSON.
	maxHeaderBytes = 64 << 10
)

// realtimePath is the WebSocket hub's path on the shared server.
const realtimePath = "/v1/realtime"

// EventSource reads stored events. *store.Store implements it.
type EventSource interface {
	// List returns up to limit events with ids greater than after, in
	// commit order. An empty after starts at the oldest stored event.
	List(ctx context.Context, after string, limit int) ([]store.Event, error)
	// GapsAfter returns the gaps whose ResumeFrom is greater than cursor,
	// in ResumeFrom order: the points before which events may be missing.
	GapsAfter(ctx context.Context, cursor string) ([]store.Gap, error)
	// NewestKnownID returns the greatest event id ever stored, pruned ones
	// included, or "" when none was.
	NewestKnownID(ctx context.Context) (string, error)
}

var _ EventSource = (*store.Store)(nil)

// Options configures the API built by New.
type Options struct {
	// AdminToken is the bearer token that every route except /healthz,
	// /readyz and /metrics requires. With an empty token, every request to
	// those routes is rejected.
	AdminToken config.Secret
	// Events is the source of GET /events. It must not be nil.
	Events EventSource
	// Ready runs the readiness checks behind GET /readyz under a 5 s
	// timeout. Nil means always ready. /readyz needs no token, so a check's
	// Detail must not contain secrets.
	Ready func(ctx context.Context) []Check
	// Role, when not nil, returns this instance's replication role
	// ("leader" or "standby"), which GET /readyz reports next to its checks.
	Role func() string
	// AuthLimiter limits failed bearer token attempts per client address.
	// Nil gets a limiter with authlimit's defaults for this API alone.
	// Share one with the WebSocket hub, so that an address blocked on one
	// is blocked on both.
	AuthLimiter *authlimit.Limiter
	// Gatherer is served at GET /metrics. Nil leaves /metrics unregistered.
	Gatherer prometheus.Gatherer
	// Logger receives request errors, panics and, at debug level, rejected
	// tokens. Nil means slog.Default(). New adds no component attribute.
	Logger *slog.Logger

	// Webhooks stores webhook endpoints and their deliveries. Nil leaves the
	// /webhooks routes unregistered.
	Webhooks WebhookStore
	// Cipher seals webhook secrets before they are stored. Nil stores them
	// unencrypted, with the "plain:" prefix.
	Cipher *delivery.Cipher
	// Guard checks webhook URLs when they are registered or changed. The
	// zero value requires https and public addresses. Development mode sets
	// AllowPrivate.
	Guard delivery.Guard
	// Catalog returns the watched model names and the configured semantic
	// event names, which webhook event patterns are checked against. Nil
	// means none of either, so only "*" and the data.* names are accepted.
	Catalog func(ctx context.Context) (models []string, semantic []string, err error)
	// RotationGrace is how long a rotated-out webhook secret keeps signing
	// deliveries when the rotate request sets no graceSeconds. Zero means
	// 24 hours.
	RotationGrace time.Duration
}

// api holds what the route handlers share.
type api struct {
	tokenHash [32]byte
	hasToken  bool
	events    EventSource
	ready     func(ctx context.Context) []Check
	role      func() string
	logger    *slog.Logger
	hooks     webhookAPI
	// routes maps each registered path to its methods, for 404 messages and
	// the Allow header of 405 responses.
	routes map[string][]string
	// authLimiter counts wrong bearer tokens per client address.
	authLimiter *authlimit.Limiter
}

// New builds the fiber app with every API route. Serve it with NewServer;
// app.Listen also works but cannot carry the WebSocket hub. New panics when
// opts.Events is nil.
func New(opts Options) *fiber.App {
	if opts.Events == nil {
		panic("httpapi: Options.Events is nil")
	}
	a := &api{
		events: opts.Events,
		ready:  opts.Ready,
		role:   opts.Role,
		logger: cmp.Or(opts.Logger, slog.Default()),
	}
	a.setToken(opts.AdminToken)
	a.authLimiter = opts.AuthLimiter
	if a.authLimiter == nil {
		a.authLimiter = authlimit.New(authlimit.Config{}, a.logger)
	}

	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		CaseSensitive:         true,
		BodyLimit:             bodyLimit,
		ReadTimeout:           readTimeout,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           idleTimeout,
		ErrorHandler:          a.handleError,
	})
	app.Use(a.recoverPanic, setCommonHeaders)

	app.Get("/healthz", a.healthz)
	app.Get("/readyz", a.readyz)
	if opts.Gatherer != nil {
		app.Get("/metrics", metricsHandler(opts.Gatherer, a.logger))
	}
	app.Get("/events", a.requireToken, a.listEvents)
	registerLivePage(app)
	if opts.Webhooks != nil {
		a.hooks = newWebhookAPI(opts)
		a.registerWebhookRoutes(app)
	}

	a.routes = routeMethods(app)
	return app
}

// routeMethods lists the methods of each registered path.
func routeMethods(app *fiber.App) map[string][]string {
	routes := make(map[string][]string)
	for _, r := range app.GetRoutes(true) {
		routes[r.Path] = append(routes[r.Path], r.Method)
	}
	for _, methods := range routes {
		slices.Sort(methods)
	}
	return routes
}

// metricsHandler serves gatherer in the Prometheus text format.
//
// /metrics needs no token on purpose: Prometheus scrapers are usually set up
// without one, and the metrics carry counts and timings, not event data or
// secrets. Block the path at the network edge when that is not acceptable.
func metricsHandler(gatherer prometheus.Gatherer, logger *slog.Logger) fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
}

// setCommonHeaders stops browsers from guessing a content type other than
// the declared one.
func setCommonHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	return c.Next()
}

// NewServer returns the service's one HTTP server on addr. Requests to
// /v1/realtime go to realtime when it is not nil, and all others to app.
//
// The outer server is net/http because the WebSocket hub (melody) needs a
// connection it can hijack, and fiber's net/http adaptor cannot provide one.
func NewServer(addr string, app *fiber.App, realtime http.Handler) *http.Server {
	api := limitRequests(app)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if realtime == nil || r.URL.Path != realtimePath {
			api.ServeHTTP(w, r)
			return
		}
		// A write deadline left by an earlier API request on this keep-alive
		// connection would otherwise cut the WebSocket off later. An error
		// means that w cannot set deadlines, and the hub then runs without.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		realtime.ServeHTTP(w, r)
	})

	return &http.Server{
		Addr:              addr,
		Handler:           limitHeaders(handler),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// limitRequests serves app through fiber's adaptor. The adaptor ignores
// fiber's body limit and timeouts and copies any body whole, so this
// handler applies the limits before a request reaches app.
func limitRequests(app *fiber.App) http.Handler {
	fiberHandler := adaptor.FiberApp(app)
	methods := app.Config().RequestMethods

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.Contains(methods, r.Method) {
			// fiber would reject an unknown method with a plain-text 400.
			writeHTTPError(w, &apiError{
				Status:  http.StatusNotImplemented,
				Code:    "not_implemented",
				Message: "method " + quote(r.Method) + " is not supported; the API uses " + strings.Join(methods, ", "),
			})
			return
		}
		// An error means that w cannot set deadlines, and the request then
		// runs without them.
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(readTimeout))
		_ = rc.SetWriteDeadline(now.Add(writeTimeout))

		if apiErr := bufferBody(r); apiErr != nil {
			writeHTTPError(w, apiErr)
			return
		}
		fiberHandler.ServeHTTP(w, r)
	})
}

// bufferBody reads the request body into memory, rejecting bodies over
// bodyLimit with a 413 before the adaptor copies them without a limit.
func bufferBody(r *http.Request) *apiError {
	tooLarge := &apiError{
		Status:  http.StatusRequestEntityTooLarge,
		Code:    "payload_too_large",
		Message: "request body is larger than 1 MiB; send a smaller body",
	}
	if r.ContentLength > bodyLimit {
		return tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, bodyLimit+1))
	if err != nil {
		return &apiError{
			Status:  http.StatusBadRequest,
			Code:    "invalid_request",
			Message: "reading the request body failed: " + err.Error(),
		}
	}
	if len(body) > bodyLimit {
		return tooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}
