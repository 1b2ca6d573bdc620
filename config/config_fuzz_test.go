package config

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// keyedLine is how a rewritten YAML type error starts: the key's path and
// its line, such as "tables[0].events[1].on (line 7): ".
var keyedLine = regexp.MustCompile(`^(the top level|(?:[^ "]|"(?:[^"\\]|\\.)*")+) \(line \d+\): `)

// moreErrors is the line that counts the errors past the listed ones.
var moreErrors = regexp.MustCompile(`^and \d+ more errors$`)

// FuzzParse parses configuration files. No input may panic. A file that
// parses must survive a round trip through yaml.Marshal unchanged, and every
// unknown key or wrong value type must be reported with the key's path.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"tables:\n  - name: public.users\n    model: User\n    replicaIdentity: full\n    events:\n" +
			"      - {name: user.created, on: insert}\n      - {name: user.updated, on: update, columns: [email]}\n" +
			"  - name: projects\npublication: civicbase\nslot: civicbase_slot\nretention: 168h\n" +
			"replicaIdentity: default\nstatusInterval: 10s\nstallTimeout: 2m\nbatchSize: 2000\n",
		"webhooks:\n  workers: 128\n  perEndpoint: 32\n  connectTimeout: 5s\n  timeout: 10s\n  lease: 60s\n" +
			"  schedule: [5s, 30s, 2m]\n  disableAfter: 120h\n  rotationGrace: 24h\n",
		"retention: abc",
		"webhooks:\n  timeout: 10\n  workers: many\n  schedule: [1s, x]",
		"tables:\n  - name: a\n    colour: red\n    events:\n      - {name: x.y, on: 3, columns: {a: b}}",
		"tables: {a: b}",
		"- 1",
		"a: &a [*a]",
		"base: &b {name: a}\ntables: [*b, {<<: *b, model: B}]",
		"slot: x\nslot: y",
		"\t",
		"retention: -1h\nbatchSize: 1e3",
		"slot: \"\\u0000\"\ntables: [{name: civicbase.events}, {name: pg_catalog.pg_class}, {name: a.b.c}]",
		"tables: [{name: a, events: [{name: data.x, on: delete, columns: [a]}, {name: data.x, on: upsert}]}]",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshaling the configuration parsed from %q: %v", data, err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("configuration parsed from %q does not parse after a round trip: %v\n%s", data, err, out)
		}
		// Comparing the YAML leaves out the difference between nil and
		// empty lists, which yaml.Marshal writes alike.
		outAgain, err := yaml.Marshal(again)
		if err != nil || !bytes.Equal(out, outAgain) {
			t.Fatalf("round trip changed the configuration parsed from %q (%v):\n%s\n%s", data, err, out, outAgain)
		}
	})
}

// checkParseError checks that err is not empty and that, for a file whose
// values have the wrong type, each message names the key.
func checkParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	message := err.Error()
	if strings.TrimSpace(message) == "" {
		t.Fatalf("empty error for %q", data)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var typeErr *yaml.TypeError
	if err := dec.Decode(new(Config)); !errors.As(err, &typeErr) {
		return
	}
	for line := range strings.SplitSeq(strings.TrimPrefix(message, "parsing YAML: "), "\n") {
		if strings.Contains(line, "already defined at line") || moreErrors.MatchString(line) {
			continue // yaml's own message names the key, or the rest are counted
		}
		if !keyedLine.MatchString(line) {
			t.Fatalf("error line %q for %q does not name the key", line, data)
		}
	}
}
