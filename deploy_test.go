package main

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const (
	alertsPath    = "deploy/prometheus/alerts.yml"
	dashboardPath = "deploy/grafana/dashboards/civicbase.json"
)

// alertRules is the part of a Prometheus rule file these tests read.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// dashboardPanel is the part of a Grafana panel these tests read. Rows may
// nest panels when collapsed.
type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

var metricNamePattern = regexp.MustCompile(`civicbase_[a-z0-9_]+`)

// safeWALMetric is emitted only when pg_replication_slots.safe_wal_size is
// not null, which needs a finite max_slot_wal_keep_size on the server.
const safeWALMetric = "civicbase_slot_safe_wal_size_bytes"

func readAlertRules(t *testing.T) alertRules {
	t.Helper()
	data, err := os.ReadFile(alertsPath)
	require.NoError(t, err)
	var rules alertRules
	require.NoError(t, yaml.Unmarshal(data, &rules))
	require.NotEmpty(t, rules.Groups, "%s has no rule groups", alertsPath)
	return rules
}

func readDashboardPanels(t *testing.T) []dashboardPanel {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	var dashboard struct {
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(data, &dashboard))
	require.NotEmpty(t, dashboard.UID, "%s needs a uid so that its URL stays the same", dashboardPath)
	require.NotEmpty(t, dashboard.Panels, "%s has no panels", dashboardPath)
	return dashboard.Panels
}

// queryExpressions returns every PromQL expression of the alert rules and
// the dashboard, each with a description of where it is.
func queryExpressions(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	for _, group := range readAlertRules(t).Groups {
		for _, rule := range group.Rules {
			exprs["alert "+rule.Alert] = rule.Expr
		}
	}
	var walk func(panels []dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, panel := range panels {
			for i, target := range panel.Targets {
				exprs["panel "+panel.Title+" target "+string(rune('A'+i))] = target.Expr
			}
			walk(panel.Panels)
		}
	}
	walk(readDashboardPanels(t))
	return exprs
}

// familyName returns the metric family that name belongs to: the name
// itself, or for a histogram's series the histogram's name.
func familyName(name string, families map[string]*dto.MetricFamily) string {
	if _, ok := families[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		if family, ok := families[base]; ok && family.GetType() == dto.MetricType_HISTOGRAM {
			return base
		}
	}
	return name
}

func TestDeployQueriesUseExposedMetrics(t *testing.T) {
	t.Parallel()
	exprs := queryExpressions(t)
	used := map[string][]string{}
	for where, expr := range exprs {
		require.NotEmpty(t, strings.TrimSpace(expr), "%s has an empty expression", where)
		for _, name := range metricNamePattern.FindAllString(expr, -1) {
			used[name] = append(used[name], where)
		}
	}
	require.NotEmpty(t, used, "no civicbase metric is used in %s or %s", alertsPath, dashboardPath)

	url, pool := newDatabase(t, `CREATE TABLE items (id bigint PRIMARY KEY, payload text)`)
	svc := startReady(t, url, "CIVICBASE_DEV=true")
	receiver := newHookReceiver(t)
	registerWebhook(t, svc.addr, receiver.URL)

	// Labeled counters and the delivery histograms appear only once they
	// count something, so one change is captured and delivered first.
	_, err := pool.Exec(context.Background(), `INSERT INTO items VALUES (1, 'a')`)
	require.NoError(t, err)
	waitUntil(t, 30*time.Second, "webhook delivered", func() bool {
		_, requests, _ := receiver.counts()
		return requests >= 1
	})

	var keepSize string
	require.NoError(t, pool.QueryRow(context.Background(), `SHOW max_slot_wal_keep_size`).Scan(&keepSize))

	// The attempt is counted after the response is read, a moment after the
	// receiver has the request, so the check polls until the names appear
	// and then reports the ones still missing.
	var unknown []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		unknown = unexposedMetrics(t, svc.addr, used, keepSize)
		if len(unknown) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(unknown)
	require.Empty(t, unknown, "metric names not exposed on /metrics")
}

// unexposedMetrics returns the names in used that the service at addr does
// not expose, each with the queries that use it.
func unexposedMetrics(t *testing.T, addr string, used map[string][]string, keepSize string) []string {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(getText(t, "http://"+addr+"/metrics")))
	require.NoError(t, err, "parsing /metrics failed")
	var unknown []string
	for name, places := range used {
		if _, ok := families[familyName(name, families)]; ok {
			continue
		}
		if name == safeWALMetric && keepSize == "-1" {
			continue
		}
		slices.Sort(places)
		unknown = append(unknown, name+" (in "+strings.Join(places, "; ")+")")
	}
	return unknown
}

func TestDeployAlertRulesComplete(t *testing.T) {
	t.Parallel()
	rules := readAlertRules(t)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(readme), -1) {
		headings[m[1]] = true
	}
	sectionRef := regexp.MustCompile(`"([^"]+)" in README\.md`)
	andRef := regexp.MustCompile(`"([^"]+)" and "`)

	var alerts []string
	for _, group := range rules.Groups {
		require.NotEmpty(t, group.Name, "a rule group has no name")
		for _, rule := range group.Rules {
			require.NotEmpty(t, rule.Alert, "group %s has a rule without an alert name", group.Name)
			alerts = append(alerts, rule.Alert)
			_, err := model.ParseDuration(rule.For)
			require.NoError(t, err, "alert %s needs a valid for: duration", rule.Alert)
			require.Contains(t, []string{"warning", "critical"}, rule.Labels["severity"],
				"alert %s needs severity warning or critical", rule.Alert)
			require.NotEmpty(t, rule.Annotations["summary"], "alert %s has no summary", rule.Alert)
			description := rule.Annotations["description"]
			refs := sectionRef.FindAllStringSubmatch(description, -1)
			require.NotEmpty(t, refs, "alert %s description names no README section", rule.Alert)
			for _, m := range append(refs, andRef.FindAllStringSubmatch(description, -1)...) {
				require.True(t, headings[m[1]], "alert %s names README section %q, which does not exist", rule.Alert, m[1])
			}
		}
	}
	require.Equal(t, len(alerts), len(slices.Compact(slices.Sorted(slices.Values(alerts)))), "alert names repeat: %v", alerts)
	for _, name := range []string{
		"CivicbaseReplicationLagBytesHigh", "CivicbaseReplicationLagSecondsHigh", "CivicbaseSlotInactive",
		"CivicbaseRetainedWALHigh", "CivicbaseSlotWALAtRisk", "CivicbaseDeadDeliveries",
		"CivicbasePendingDeliveriesOld", "CivicbaseWebhooksDisabled", "CivicbaseStreamStalled",
	} {
		require.Contains(t, alerts, name)
	}
}

func TestDeployPrometheusConfig(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("deploy/prometheus/prometheus.yml")
	require.NoError(t, err)
	var cfg struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
		} `yaml:"global"`
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &cfg))

	require.Equal(t, "15s", cfg.Global.ScrapeInterval)
	// docker-compose.yml mounts deploy/prometheus at /etc/prometheus.
	require.Equal(t, []string{"/etc/prometheus/alerts.yml"}, cfg.RuleFiles)
	require.Len(t, cfg.ScrapeConfigs, 1)
	scrape := cfg.ScrapeConfigs[0]
	require.Equal(t, "civicbase", scrape.JobName, "the alert rules select job=\"civicbase\"")
	require.Equal(t, "/metrics", scrape.MetricsPath)
	require.Len(t, scrape.StaticConfigs, 1)
	require.Equal(t, []string{"civicbase:8080"}, scrape.StaticConfigs[0].Targets)
}

func TestDeployGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("deploy/grafana/provisioning/datasources/prometheus.yml")
	require.NoError(t, err)
	var sources struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.Unmarshal(data, &sources))
	require.Len(t, sources.Datasources, 1)
	require.Equal(t, "prometheus", sources.Datasources[0].Type)
	require.Equal(t, "http://prometheus:9090", sources.Datasources[0].URL)

	// Every panel and target names the provisioned data source by uid.
	dashboard, err := os.ReadFile(dashboardPath)
	require.NoError(t, err)
	for _, m := range regexp.MustCompile(`"uid": "([^"]*)"`).FindAllStringSubmatch(string(dashboard), -1) {
		if m[1] != "civicbase" {
			require.Equal(t, sources.Datasources[0].UID, m[1], "%s refers to an unknown data source", dashboardPath)
		}
	}

	data, err = os.ReadFile("deploy/grafana/provisioning/dashboards/dashboards.yml")
	require.NoError(t, err)
	var providers struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	require.NoError(t, yaml.Unmarshal(data, &providers))
	require.Len(t, providers.Providers, 1)
	require.Equal(t, "file", providers.Providers[0].Type)
	// docker-compose.yml mounts deploy/grafana/dashboards at this path.
	require.Equal(t, "/etc/grafana/dashboards", providers.Providers[0].Options.Path)
}
