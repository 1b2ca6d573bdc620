package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// yamlNode is a node of the YAML document with the path of the key it is
// the value of, such as "webhooks.timeout" or "tables[0].events[1]".
type yamlNode struct {
	path string
	key  *yaml.Node // nil for sequence items and the root
	node *yaml.Node
	typ  reflect.Type // the Go type it decodes into, nil for unknown keys
}

var (
	lineMessage    = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	unknownField   = regexp.MustCompile(`^field (.*) not found in type config\.(\w+)$`)
	cannotDecode   = regexp.MustCompile("(?s)^cannot unmarshal (!.*?)(?: `(.*)`)? into (.+)$")
	yamlTypeStruct = map[string]reflect.Type{
		"Config": reflect.TypeFor[Config](), "Webhooks": reflect.TypeFor[Webhooks](),
		"Table": reflect.TypeFor[Table](), "SemanticEvent": reflect.TypeFor[SemanticEvent](),
	}
)

// maxDescribedErrors bounds the errors that describeYAMLError lists. Each
// one searches the document's nodes, and a long list adds no help.
const maxDescribedErrors = 20

// describeYAMLError rewrites the messages of a *yaml.TypeError so that each
// names the key it is about, as a path such as webhooks.timeout or
// tables[0].events[1].on, and states what value the key takes. It lists
// the first maxDescribedErrors and counts the rest. Other errors are
// returned unchanged.
func describeYAMLError(data []byte, err error) error {
	var typeErr *yaml.TypeError
	if !errors.As(err, &typeErr) {
		return err
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return err
	}
	nodes := collectNodes(&doc, "", nil, reflect.TypeFor[Config](), nil)
	used := make(map[*yaml.Node]bool)
	var messages []error
	for i, message := range typeErr.Errors {
		if i == maxDescribedErrors {
			messages = append(messages, fmt.Errorf("and %d more errors", len(typeErr.Errors)-i))
			break
		}
		messages = append(messages, errors.New(describeMessage(message, nodes, used)))
	}
	return errors.Join(messages...)
}

// collectNodes lists node and the nodes below it, depth first, with the Go
// type each decodes into when typ is node's. Aliases are not followed, so a
// document that refers to itself ends.
func collectNodes(node *yaml.Node, path string, key *yaml.Node, typ reflect.Type, out []yamlNode) []yamlNode {
	switch node.Kind {
	case yaml.DocumentNode:
		for _, child := range node.Content {
			out = collectNodes(child, path, nil, typ, out)
		}
		return out
	case yaml.AliasNode:
		return out
	}
	out = append(out, yamlNode{path: path, key: key, node: node, typ: typ})
	switch node.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			childPath := keySegment(k.Value)
			if path != "" {
				childPath = path + "." + childPath
			}
			out = collectNodes(v, childPath, k, fieldType(typ, k.Value), out)
		}
	case yaml.SequenceNode:
		var elem reflect.Type
		if typ != nil && typ.Kind() == reflect.Slice {
			elem = typ.Elem()
		}
		for i, item := range node.Content {
			out = collectNodes(item, fmt.Sprintf("%s[%d]", path, i), nil, elem, out)
		}
	}
	return out
}

// plainKey matches the keys that a path shows without quotes.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// keySegment returns key as a path shows it: as is when it is a plain
// word, Go-quoted otherwise, so a key with spaces or dots stays one key.
func keySegment(key string) string {
	if plainKey.MatchString(key) {
		return key
	}
	return strconv.Quote(key)
}

// fieldType returns the type of the field of struct type typ whose YAML
// key is name, or nil when there is none.
func fieldType(typ reflect.Type, name string) reflect.Type {
	if typ == nil || typ.Kind() != reflect.Struct {
		return nil
	}
	for field := range typ.Fields() {
		if key, _, _ := strings.Cut(field.Tag.Get("yaml"), ","); key == name {
			return field.Type
		}
	}
	return nil
}

// describeMessage rewrites one "line N: …" message of a yaml.TypeError.
// Messages it does not recognize are returned unchanged.
func describeMessage(message string, nodes []yamlNode, used map[*yaml.Node]bool) string {
	m := lineMessage.FindStringSubmatch(message)
	if m == nil {
		return message
	}
	line, _ := strconv.Atoi(m[1])
	if f := unknownField.FindStringSubmatch(m[2]); f != nil {
		return describeUnknownKey(line, f[1], f[2], nodes)
	}
	if d := cannotDecode.FindStringSubmatch(m[2]); d != nil {
		return describeWrongType(line, d[1], d[2], d[3], nodes, used)
	}
	return message
}

// describeUnknownKey names an unknown key and the keys accepted beside it.
func describeUnknownKey(line int, name, typeName string, nodes []yamlNode) string {
	path := keySegment(name)
	for _, n := range nodes {
		if n.key != nil && n.key.Line == line && n.key.Value == name {
			path = n.path
			break
		}
	}
	message := fmt.Sprintf("%s (line %d): unknown key", path, line)
	if t, ok := yamlTypeStruct[typeName]; ok {
		message += "; the keys accepted here are " + strings.Join(yamlKeys(t), ", ")
	}
	return message
}

// describeWrongType names a key whose value has the wrong YAML type, such
// as a string where a duration belongs. tag is the node's short tag, such
// as !!str, value the value as yaml quotes it (shortened when long), and
// target the Go type. used records the nodes already reported, so that
// equal values on one line, as in [x, x], are reported apart in document order.
func describeWrongType(line int, tag, value, target string, nodes []yamlNode, used map[*yaml.Node]bool) string {
	// Several nodes may start on the line, as in a flow mapping. The one
	// yaml reports decodes into target and, for a scalar, has the value.
	var found *yamlNode
	best := -1
	for i := range nodes {
		n := &nodes[i]
		if n.node.Line != line || n.node.ShortTag() != tag {
			continue
		}
		score := 0
		if n.typ != nil && n.typ.String() == target {
			score += 4
		}
		if value != "" && strings.HasPrefix(n.node.Value, strings.TrimSuffix(value, "...")) {
			score += 2
		}
		if !used[n.node] {
			score++
		}
		if score > best {
			found, best = n, score
		}
	}
	if found != nil {
		used[found.node] = true
	}
	key := "the top level"
	if found != nil && found.path != "" {
		key = found.path
	}
	got := map[string]string{"!!map": "a mapping", "!!seq": "a list", "!!str": "a string", "!!int": "an integer",
		"!!float": "a number", "!!bool": "a boolean", "!!null": "null"}[tag]
	if got == "" {
		got = "a value tagged " + strconv.Quote(tag)
	}
	if value != "" {
		got += " " + strconv.Quote(value)
	}
	return fmt.Sprintf("%s (line %d): expected %s, got %s", key, line, describeTarget(target), got)
}

// describeTarget describes in a user's words what a Go type of the
// configuration takes.
func describeTarget(target string) string {
	duration := "a duration with a unit, such as 90s, 10m or 168h"
	switch target {
	case reflect.TypeFor[time.Duration]().String():
		return duration
	case "[]" + reflect.TypeFor[time.Duration]().String():
		return "a list of durations, each " + duration
	case "int":
		return "an integer"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "[]config.Table":
		return "a list of tables, each a mapping with name and optional model, replicaIdentity and events"
	case "[]config.SemanticEvent":
		return "a list of events, each a mapping with name, on and optional columns"
	}
	if t, ok := yamlTypeStruct[strings.TrimPrefix(target, "config.")]; ok {
		return "a mapping with the keys " + strings.Join(yamlKeys(t), ", ")
	}
	return target
}

// yamlKeys lists the YAML keys of a configuration struct.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for field := range t.Fields() {
		if name, _, _ := strings.Cut(field.Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}
