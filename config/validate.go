package config

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

func (c Config) validateFile() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !identPattern.MatchString(c.Publication) {
		add("publication %q is not a valid name; use lowercase letters, digits and _", c.Publication)
	}
	if !identPattern.MatchString(c.Slot) || len(c.Slot) > 63 {
		add("slot %q is not a valid slot name; use up to 63 lowercase letters, digits and _", c.Slot)
	}
	if c.Retention < time.Minute {
		add("retention %s is too short; use at least 1m, e.g. 168h", c.Retention)
	}
	if c.ReplicaIdentity != IdentityFull && c.ReplicaIdentity != IdentityDefault {
		add("replicaIdentity %q is not known; use %q or %q", c.ReplicaIdentity, IdentityFull, IdentityDefault)
	}
	if c.StatusInterval < 100*time.Millisecond || c.StatusInterval > time.Minute {
		add("statusInterval %s is out of range; use 100ms to 1m", c.StatusInterval)
	}
	if c.StallTimeout < 10*time.Second {
		add("stallTimeout %s is too short; use at least 10s, e.g. 2m", c.StallTimeout)
	}
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 10*time.Minute {
		add("shutdownTimeout %s is out of range; use 1s to 10m", c.ShutdownTimeout)
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		add("batchSize %d is out of range; use 1 to 100000", c.BatchSize)
	}
	w := c.Webhooks
	if w.Workers < 0 || w.PerEndpoint < 0 || w.ConnectTimeout < 0 || w.Timeout < 0 || w.DisableAfter < 0 || w.RotationGrace < 0 {
		add("webhooks: negative values are not allowed; leave a field out for its default")
	}
	if timeout := cmp.Or(w.Timeout, 10*time.Second); w.Lease != 0 && w.Lease <= timeout {
		add("webhooks.lease %s must be longer than webhooks.timeout %s, or a slow attempt could be sent twice", w.Lease, timeout)
	}
	if w.QueueMetricsInterval != 0 && w.QueueMetricsInterval < time.Second {
		add("webhooks.queueMetricsInterval %s is shorter than 1s; use at least 1s, e.g. 15s", w.QueueMetricsInterval)
	}
	for i, d := range w.Schedule {
		if d < time.Second {
			add("webhooks.schedule[%d] %s is shorter than 1s; retries need at least a second apart", i, d)
		}
	}
	seen := map[string]bool{}
	for i, t := range c.Tables {
		if err := t.validate(); err != nil {
			add("tables[%d]: %w", i, err)
		}
		if seen[t.Name] {
			add("tables[%d]: table %q is listed twice; merge the entries", i, t.Name)
		}
		seen[t.Name] = true
	}
	return errors.Join(errs...)
}

func (t Table) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	schema, name, ok := strings.Cut(t.Name, ".")
	switch {
	case t.Name == "":
		add("name is missing; give the table as schema.table or table")
	case !ok || schema == "" || name == "" || strings.Contains(name, "."):
		add("name %q is not schema.table", t.Name)
	case schema == "civicbase":
		add("table %q is in the service's own schema civicbase, which is never watched", t.Name)
	case schema == "pg_catalog" || schema == "information_schema" || strings.HasPrefix(schema, "pg_toast"):
		add("table %q is a system catalog, which logical replication does not publish; watch your own tables", t.Name)
	}
	names := map[string]bool{}
	for j, e := range t.Events {
		if names[e.Name] {
			add("events[%d]: event %s is listed twice for this table; merge the entries", j, e.Name)
		}
		names[e.Name] = true
	}
	if !modelPattern.MatchString(t.Model) {
		add("model %q is not a valid model name; use letters, digits and _, starting with a letter", t.Model)
	}
	if t.ReplicaIdentity != IdentityFull && t.ReplicaIdentity != IdentityDefault {
		add("replicaIdentity %q is not known; use %q or %q", t.ReplicaIdentity, IdentityFull, IdentityDefault)
	}
	for j, e := range t.Events {
		if !eventNamePattern.MatchString(e.Name) {
			add("events[%d]: name %q is not of the form noun.verb (lowercase, e.g. user.created)", j, e.Name)
		} else if strings.HasPrefix(e.Name, "data.") {
			add("events[%d]: name %q is reserved for the generic events; pick another prefix", j, e.Name)
		}
		switch e.On {
		case "insert", "delete":
			if len(e.Columns) > 0 {
				add("events[%d]: columns only apply to on: update, not on: %s", j, e.On)
			}
		case "update":
		default:
			add("events[%d]: on %q is not known; use insert, update or delete", j, e.On)
		}
	}
	return errors.Join(errs...)
}

// ModelName derives a model name from a table name: words split on _ are
// capitalized and the last one is made singular, so user_profiles becomes
// UserProfile and categories becomes Category.
func ModelName(table string) string {
	words := strings.FieldsFunc(table, func(r rune) bool { return r == '_' || r == '-' || r == ' ' })
	if len(words) == 0 {
		return "Model"
	}
	words[len(words)-1] = singular(words[len(words)-1])
	var b strings.Builder
	for _, w := range words {
		r := []rune(w)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	name := b.String()
	if !unicode.IsLetter([]rune(name)[0]) {
		name = "T" + name
	}
	return name
}

// singular applies the common English plural rules; irregular plurals need a
// model name in the configuration.
func singular(w string) string {
	lower := strings.ToLower(w)
	switch {
	case strings.HasSuffix(lower, "ies") && len(w) > 3:
		return w[:len(w)-3] + "y"
	case strings.HasSuffix(lower, "sses"), strings.HasSuffix(lower, "xes"),
		strings.HasSuffix(lower, "ches"), strings.HasSuffix(lower, "shes"),
		strings.HasSuffix(lower, "uses"):
		return w[:len(w)-2]
	case strings.HasSuffix(lower, "ss"), strings.HasSuffix(lower, "us"), strings.HasSuffix(lower, "is"):
		return w
	case strings.HasSuffix(lower, "s") && len(w) > 1:
		return w[:len(w)-1]
	}
	return w
}
