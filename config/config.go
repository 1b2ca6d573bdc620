// Package config loads the service's settings from environment variables and
// an optional YAML file, applies defaults in one place and validates them.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Replica identity settings for watched tables.
const (
	// IdentityFull makes Postgres log the whole old row, which exact change
	// sets and `old` need.
	IdentityFull = "full"
	// IdentityDefault leaves the table as it is; updates then report every
	// column of the new row.
	IdentityDefault = "default"
)

// Config holds every setting of the service.
type Config struct {
	// DatabaseURL is the database to watch (DATABASE_URL). State lives in its
	// civicbase schema.
	DatabaseURL Secret `yaml:"-"`
	// Addr is the HTTP listen address (CIVICBASE_ADDR). Default ":8080".
	Addr string `yaml:"-"`
	// AdminToken is the bearer token for the API (CIVICBASE_ADMIN_TOKEN).
	AdminToken Secret `yaml:"-"`
	// Dev allows loopback and private webhook URLs (CIVICBASE_DEV=true).
	Dev bool `yaml:"-"`
	// JWTSecret verifies HS256 JWTs that WebSocket clients authenticate with
	// (CIVICBASE_JWT_SECRET). Empty means only the admin token is accepted.
	JWTSecret Secret `yaml:"-"`
	// EncryptionKey, when set, encrypts webhook secrets at rest with
	// AES-256-GCM (CIVICBASE_ENCRYPTION_KEY, 32 bytes in base64).
	EncryptionKey Secret `yaml:"-"`
	// AllowedOrigins lists the browser origins whose pages may open a
	// realtime WebSocket session, such as https://app.example.com, or "*"
	// for any (CIVICBASE_ALLOWED_ORIGINS, comma-separated). Requests without
	// an Origin header and same-host origins are always allowed.
	AllowedOrigins []string `yaml:"-"`

	// Publication is the publication's name. Default "civicbase".
	Publication string `yaml:"publication"`
	// Slot is the replication slot's name. Default "civicbase_slot".
	Slot string `yaml:"slot"`
	// Retention is how long stored events are kept. Default 168h (7 days).
	Retention time.Duration `yaml:"retention"`
	// ReplicaIdentity applies to tables that do not set their own: "full"
	// (default) or "default".
	ReplicaIdentity string `yaml:"replicaIdentity"`
	// StatusInterval is how often the reader sends a standby status update
	// when nothing else prompts one. Default 10s.
	StatusInterval time.Duration `yaml:"statusInterval"`
	// StallTimeout is how long a streaming session may go without
	// receiving a message or storing a write, while the server's WAL
	// position is ahead of the stored position, before the reader ends it
	// and reconnects. Default 2m, minimum 10s.
	StallTimeout time.Duration `yaml:"stallTimeout"`
	// ShutdownTimeout bounds each step of a graceful shutdown after SIGTERM
	// or SIGINT: webhook attempts in flight, storing the changes the reader
	// holds, and closing HTTP connections. The steps run in parallel.
	// Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// BatchSize is the most events written to the store in one transaction.
	// Default 2000.
	BatchSize int `yaml:"batchSize"`
	// Tables lists the watched tables. Empty means every table in schema
	// public, including tables created later.
	Tables []Table `yaml:"tables"`
	// Webhooks tunes webhook delivery.
	Webhooks Webhooks `yaml:"webhooks"`
}

// Webhooks tunes webhook delivery. Zero fields take the defaults given.
type Webhooks struct {
	// Workers is the most deliveries in flight per instance. Default 128.
	Workers int `yaml:"workers"`
	// PerEndpoint is the most deliveries in flight to one endpoint per
	// instance. Default 32.
	PerEndpoint int `yaml:"perEndpoint"`
	// ConnectTimeout bounds connecting to an endpoint. Default 5s.
	ConnectTimeout time.Duration `yaml:"connectTimeout"`
	// Timeout bounds a whole attempt. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Lease is how long a claimed delivery stays reserved for the instance
	// that claimed it. After a crash, its deliveries are sent again once the
	// lease ends. It must exceed Timeout. Default 60s.
	Lease time.Duration `yaml:"lease"`
	// Schedule is the wait before each retry. Default 5s, 30s, 2m, 10m,
	// 30m, 1h, 3h, 6h, 12h, 24h.
	Schedule []time.Duration `yaml:"schedule"`
	// DisableAfter disables an endpoint whose deliveries have all failed
	// for this long. Default 120h.
	DisableAfter time.Duration `yaml:"disableAfter"`
	// RotationGrace is how long the previous secret keeps signing after a
	// rotation. Default 24h.
	RotationGrace time.Duration `yaml:"rotationGrace"`
	// QueueMetricsInterval is how often each instance reads the delivery
	// queue gauges of /metrics from Postgres. At least 1s. Default 15s.
	QueueMetricsInterval time.Duration `yaml:"queueMetricsInterval"`
}

// Table is one watched table.
type Table struct {
	// Name is "schema.table", or "table" for schema public.
	Name string `yaml:"name"`
	// Model is the model name in events. Default: derived from the table
	// name, so user_profiles becomes UserProfile.
	Model string `yaml:"model"`
	// ReplicaIdentity overrides Config.ReplicaIdentity for this table.
	ReplicaIdentity string `yaml:"replicaIdentity"`
	// Events are semantic events emitted next to the generic data.* ones.
	Events []SemanticEvent `yaml:"events"`
}

// SemanticEvent is a named event emitted when a row change matches.
type SemanticEvent struct {
	// Name is the event name, such as user.created or project.status_changed.
	Name string `yaml:"name"`
	// On is the operation: insert, update or delete.
	On string `yaml:"on"`
	// Columns, for updates, limits the event to changes of at least one of
	// these columns. Empty means any update.
	Columns []string `yaml:"columns"`
}

// Secret is a string that never appears in logs or formatted output.
type Secret string

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// String redacts the secret in fmt output.
func (Secret) String() string { return "[redacted]" }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

var (
	eventNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)
	modelPattern     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	identPattern     = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)
)

// Load reads the environment and, when CIVICBASE_CONFIG names a file, the
// YAML in it. It returns the validated configuration with defaults applied.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	if path := getenv("CIVICBASE_CONFIG"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading CIVICBASE_CONFIG: %w", err)
		}
		if c, err = Parse(data); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
	}
	c.DatabaseURL = Secret(getenv("DATABASE_URL"))
	c.Addr = getenv("CIVICBASE_ADDR")
	c.AdminToken = Secret(getenv("CIVICBASE_ADMIN_TOKEN"))
	c.EncryptionKey = Secret(getenv("CIVICBASE_ENCRYPTION_KEY"))
	c.JWTSecret = Secret(getenv("CIVICBASE_JWT_SECRET"))
	origins, err := parseOrigins(getenv("CIVICBASE_ALLOWED_ORIGINS"))
	if err != nil {
		return c, err
	}
	c.AllowedOrigins = origins
	if v := getenv("CIVICBASE_DEV"); v != "" {
		dev, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("CIVICBASE_DEV=%q is not a boolean; use true or false", v)
		}
		c.Dev = dev
	}
	c = c.WithDefaults()
	return c, c.Validate()
}

// parseOrigins splits CIVICBASE_ALLOWED_ORIGINS. Each entry is "*" or an
// origin as browsers send it: scheme://host[:port], with no path.
func parseOrigins(list string) ([]string, error) {
	var origins []string
	for entry := range strings.SplitSeq(list, ",") {
		origin := strings.TrimSpace(entry)
		if origin == "" {
			continue
		}
		u, err := url.Parse(origin)
		if origin != "*" && (err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
			return nil, fmt.Errorf("CIVICBASE_ALLOWED_ORIGINS entry %q is not an origin; use * or scheme://host[:port], e.g. https://app.example.com", origin)
		}
		origins = append(origins, origin)
	}
	return origins, nil
}

// Parse decodes YAML, rejecting unknown fields, and validates the file's
// settings. Environment settings are not checked here.
func Parse(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("parsing YAML: %w", describeYAMLError(data, err))
	}
	c = c.WithDefaults()
	return c, c.validateFile()
}

// WithDefaults returns c with every zero setting replaced by its default.
func (c Config) WithDefaults() Config {
	c.Addr = cmp.Or(c.Addr, ":8080")
	c.Publication = cmp.Or(c.Publication, "civicbase")
	c.Slot = cmp.Or(c.Slot, "civicbase_slot")
	c.Retention = cmp.Or(c.Retention, 7*24*time.Hour)
	c.ReplicaIdentity = cmp.Or(c.ReplicaIdentity, IdentityFull)
	c.StatusInterval = cmp.Or(c.StatusInterval, 10*time.Second)
	c.StallTimeout = cmp.Or(c.StallTimeout, 2*time.Minute)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.BatchSize = cmp.Or(c.BatchSize, 2000)
	c.Webhooks.RotationGrace = cmp.Or(c.Webhooks.RotationGrace, 24*time.Hour)
	tables := make([]Table, len(c.Tables))
	for i, t := range c.Tables {
		if !strings.Contains(t.Name, ".") && t.Name != "" {
			t.Name = "public." + t.Name
		}
		t.ReplicaIdentity = cmp.Or(t.ReplicaIdentity, c.ReplicaIdentity)
		if t.Model == "" {
			_, name, _ := strings.Cut(t.Name, ".")
			t.Model = ModelName(name)
		}
		tables[i] = t
	}
	c.Tables = tables
	return c
}

// Validate checks every setting and returns all problems found, each naming
// the value and the fix.
func (c Config) Validate() error {
	errs := []error{c.validateFile()}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is not set; set it to the database to watch, e.g. postgres://user:pass@localhost:5432/app"))
	} else if u, err := url.Parse(string(c.DatabaseURL)); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		errs = append(errs, errors.New("DATABASE_URL is not a postgres:// URL; use the form postgres://user:pass@host:5432/dbname"))
	}
	if len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("CIVICBASE_ADMIN_TOKEN is missing or shorter than 16 characters; set a long random value, e.g. `openssl rand -hex 32`"))
	}
	return errors.Join(errs...)
}
