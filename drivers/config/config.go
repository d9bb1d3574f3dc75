// Package config decodes YAML strictly: an unknown key, a wrong type or a
// missing required field is an error that names the file, the line and the
// key, so a person can fix a config without reading code.
//
// Struct fields are named by their `yaml` tag; a field tagged
// `required:"true"` must be present.
package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem at one place in a YAML file.
type Error struct {
	File string // empty when decoding from memory
	Line int
	Key  string // dotted path, e.g. "export.power.config.delay"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d: ", e.Line)
	} else if e.File != "" {
		b.WriteString(" ")
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Decode decodes n into v (a pointer) strictly. file and key only label
// errors: the file n came from and the path of n within it.
func Decode(file, key string, n *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("config.Decode: want a non-nil pointer, got %T", v)
	}
	if n == nil || n.Kind == 0 {
		// An absent block decodes as empty, which still needs its required keys.
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if err := check(file, key, n, rv.Type().Elem()); err != nil {
		return err
	}
	if err := n.Decode(v); err != nil {
		return typeError(file, key, n, err)
	}
	return nil
}

// Parse parses a whole YAML document and decodes it strictly into v.
func Parse(file string, data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return syntaxError(file, err)
	}
	if doc.Kind == 0 {
		return &Error{File: file, Msg: "the file is empty; see examples/ for a complete one"}
	}
	return Decode(file, "", &doc, v)
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeType            = reflect.TypeFor[yaml.Node]()
)

// check walks n against t and reports the first unknown or missing key.
// Types that decode themselves, and yaml.Node fields, are left to their own
// decoding.
func check(file, key string, n *yaml.Node, t reflect.Type) error {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return decodeLeaf(file, key, n, t)
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode {
			return &Error{File: file, Line: n.Line, Key: key, Msg: fmt.Sprintf("want a single value, got %s", describe(n))}
		}
		return decodeLeaf(file, key, n, t)
	case reflect.Struct:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return checkRequired(file, key, n, t, nil)
		}
		if n.Kind != yaml.MappingNode {
			return &Error{File: file, Line: n.Line, Key: key, Msg: fmt.Sprintf("want a mapping of keys, got %s", describe(n))}
		}
		fields := structFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return &Error{File: file, Line: k.Line, Key: join(key, k.Value),
					Msg: fmt.Sprintf("unknown key; valid keys: %s", strings.Join(fieldNames(t), ", "))}
			}
			if seen[k.Value] {
				return &Error{File: file, Line: k.Line, Key: join(key, k.Value), Msg: "key given twice"}
			}
			seen[k.Value] = true
			if err := check(file, join(key, k.Value), val, f.Type); err != nil {
				return err
			}
		}
		return checkRequired(file, key, n, t, seen)
	case reflect.Map:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return &Error{File: file, Line: n.Line, Key: key, Msg: fmt.Sprintf("want a mapping, got %s", describe(n))}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := check(file, join(key, n.Content[i].Value), n.Content[i+1], t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil // a scalar where a list is wanted: yaml's own error names it
		}
		for i, item := range n.Content {
			if err := check(file, fmt.Sprintf("%s[%d]", key, i), item, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeLeaf decodes one value on its own, so that an error names its key.
func decodeLeaf(file, key string, n *yaml.Node, t reflect.Type) error {
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		return typeError(file, key, n, err)
	}
	return nil
}

func checkRequired(file, key string, n *yaml.Node, t reflect.Type, seen map[string]bool) error {
	for name, f := range structFields(t) {
		if f.Tag.Get("required") == "true" && !seen[name] {
			return &Error{File: file, Line: n.Line, Key: join(key, name), Msg: "required key is missing"}
		}
	}
	return nil
}

func structFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, v := range structFields(f.Type) {
				fields[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for name := range structFields(t) {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func join(key, sub string) string {
	if key == "" {
		return sub
	}
	return key + "." + sub
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// yamlLine matches the "line N: " that yaml puts in front of its messages.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// typeError turns yaml's "line N: cannot unmarshal ..." into an *Error.
func typeError(file, key string, n *yaml.Node, err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := n.Line
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return &Error{File: file, Line: line, Key: key, Msg: msg}
}

func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return &Error{File: file, Line: line, Msg: "YAML syntax: " + msg}
}
