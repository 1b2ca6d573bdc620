package main

import (
	"os"
	"regexp"
	"slices"
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
