package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/civicbase/civicbase/config"
)

// composeFile is the part of docker-compose.yml these tests read. Docker
// does not run in CI, so the file is parsed and checked instead of started.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       string            `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yml")
	require.NoError(t, err)
	var compose composeFile
	require.NoError(t, yaml.Unmarshal(data, &compose))
	return compose
}

func TestComposePostgres(t *testing.T) {
	t.Parallel()
	postgres, ok := readCompose(t).Services["postgres"]
	require.True(t, ok, "service postgres is missing")

	require.Equal(t, "postgres:16", postgres.Image)
	require.NotEmpty(t, postgres.Command)
	require.Equal(t, "postgres", postgres.Command[0])
	require.Contains(t, postgres.Command, "wal_level=logical")
	require.Contains(t, postgres.Command, "max_replication_slots=10")
	require.Contains(t, postgres.Command, "max_wal_senders=10")
	for i, arg := range postgres.Command[1:] {
		if i%2 == 0 {
			require.Equal(t, "-c", arg, "command must be postgres followed by -c name=value pairs")
		}
	}
	require.Contains(t, postgres.Volumes, "./testdata/demo.sql:/docker-entrypoint-initdb.d/demo.sql:ro")
}

func TestComposeService(t *testing.T) {
	t.Parallel()
	service, ok := readCompose(t).Services["civicbase"]
	require.True(t, ok, "service civicbase is missing")

	require.Equal(t, ".", service.Build)
	require.Contains(t, service.Environment, "DATABASE_URL")
	require.Regexp(t, regexp.MustCompile(`^postgres://[^@]+@postgres:5432/`), service.Environment["DATABASE_URL"])
	require.Contains(t, service.Environment, "CIVICBASE_ADMIN_TOKEN")
	require.Regexp(t, regexp.MustCompile(`^\$\{CIVICBASE_ADMIN_TOKEN:\?.+\}$`), service.Environment["CIVICBASE_ADMIN_TOKEN"],
		"compose must refuse to start without an admin token")
	require.Equal(t, ":8080", service.Environment["CIVICBASE_ADDR"])
	require.Equal(t, "/etc/civicbase/demo.yaml", service.Environment["CIVICBASE_CONFIG"])
	require.Contains(t, service.Volumes, "./testdata/demo.yaml:/etc/civicbase/demo.yaml:ro")

	require.Contains(t, service.DependsOn, "postgres")
	require.Equal(t, "service_healthy", service.DependsOn["postgres"].Condition)
}

// requireLocalPorts checks that every published port of service is bound
// to 127.0.0.1 and that containerPort is among them.
func requireLocalPorts(t *testing.T, name string, service composeService, containerPort string) {
	t.Helper()
	require.NotEmpty(t, service.Ports, "service %s publishes no port", name)
	var published []string
	for _, port := range service.Ports {
		require.True(t, strings.HasPrefix(port, "127.0.0.1:"),
			"service %s publishes %q beyond localhost; bind it to 127.0.0.1", name, port)
		published = append(published, port[strings.LastIndex(port, ":")+1:])
	}
	require.Contains(t, published, containerPort, "service %s does not publish port %s", name, containerPort)
}

// requireMountedDirectory checks that service mounts the repository folder
// source read-only at target and that the folder exists.
func requireMountedDirectory(t *testing.T, name string, service composeService, source, target string) {
	t.Helper()
	require.Contains(t, service.Volumes, "./"+source+":"+target+":ro")
	info, err := os.Stat(source)
	require.NoError(t, err, "service %s mounts folder %s, which is missing", name, source)
	require.True(t, info.IsDir(), "service %s mounts %s, which is not a folder", name, source)
}

func TestComposePrometheus(t *testing.T) {
	t.Parallel()
	prometheus, ok := readCompose(t).Services["prometheus"]
	require.True(t, ok, "service prometheus is missing")

	require.True(t, strings.HasPrefix(prometheus.Image, "prom/prometheus:"), "image %q", prometheus.Image)
	require.Contains(t, prometheus.Command, "--config.file=/etc/prometheus/prometheus.yml")
	requireMountedDirectory(t, "prometheus", prometheus, "deploy/prometheus", "/etc/prometheus")
	require.FileExists(t, "deploy/prometheus/prometheus.yml")
	require.FileExists(t, "deploy/prometheus/alerts.yml")
	requireLocalPorts(t, "prometheus", prometheus, "9090")
}

func TestComposeGrafana(t *testing.T) {
	t.Parallel()
	grafana, ok := readCompose(t).Services["grafana"]
	require.True(t, ok, "service grafana is missing")

	require.True(t, strings.HasPrefix(grafana.Image, "grafana/grafana:"), "image %q", grafana.Image)
	requireMountedDirectory(t, "grafana", grafana, "deploy/grafana/provisioning", "/etc/grafana/provisioning")
	requireMountedDirectory(t, "grafana", grafana, "deploy/grafana/dashboards", "/etc/grafana/dashboards")
	require.FileExists(t, "deploy/grafana/dashboards/civicbase.json")
	requireLocalPorts(t, "grafana", grafana, "3000")

	require.Equal(t, "true", grafana.Environment["GF_AUTH_ANONYMOUS_ENABLED"])
	require.Equal(t, "Viewer", grafana.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"],
		"anonymous visitors must not be able to change dashboards")
	require.Regexp(t, regexp.MustCompile(`^\$\{GRAFANA_ADMIN_PASSWORD[:}]`), grafana.Environment["GF_SECURITY_ADMIN_PASSWORD"],
		"the admin password must come from the environment")
	require.Contains(t, grafana.DependsOn, "prometheus")
}

func TestDemoConfigParses(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/demo.yaml")
	require.NoError(t, err)

	cfg, err := config.Parse(data)
	require.NoError(t, err)
	names := make([]string, len(cfg.Tables))
	for i, table := range cfg.Tables {
		names[i] = table.Name
	}
	require.Equal(t, []string{"public.users", "public.user_profiles", "public.projects"}, names)
	require.Equal(t, "UserProfile", cfg.Tables[1].Model)
}

// TestDemoConfigMatchesSchema checks that every table and column that
// demo.yaml names is created by demo.sql.
func TestDemoConfigMatchesSchema(t *testing.T) {
	t.Parallel()
	schema, err := os.ReadFile("testdata/demo.sql")
	require.NoError(t, err)
	data, err := os.ReadFile("testdata/demo.yaml")
	require.NoError(t, err)
	cfg, err := config.Parse(data)
	require.NoError(t, err)

	tables := regexp.MustCompile(`(?s)CREATE TABLE (\w+) \((.*?)\n\);`).FindAllStringSubmatch(string(schema), -1)
	columns := map[string][]string{}
	for _, m := range tables {
		for _, col := range regexp.MustCompile(`(?m)^\s+(\w+)\s`).FindAllStringSubmatch(m[2], -1) {
			columns["public."+m[1]] = append(columns["public."+m[1]], col[1])
		}
	}
	for _, table := range cfg.Tables {
		require.Contains(t, columns, table.Name, "demo.sql does not create %s", table.Name)
		for _, event := range table.Events {
			for _, col := range event.Columns {
				require.True(t, slices.Contains(columns[table.Name], col),
					"event %s names column %s, which %s does not have", event.Name, col, table.Name)
			}
		}
	}
}
