package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	goyaml "go.yaml.in/yaml/v2"
	"sigs.k8s.io/yaml"
)

// MaxManifestBytes bounds the size of a manifest file. It leaves room for
// a prompt at its own limit (MaxPromptBytes) even when JSON escaping
// inflates it, and stops a runaway file from being read into memory.
const MaxManifestBytes = 8 << 20

// Parse decodes a JSON or YAML manifest. Both syntaxes share the struct's
// `json` tags (YAML is converted to JSON first), so a key is spelled the
// same way in either.
//
// Parse checks the document's shape and nothing more: every unknown key
// (with a did-you-mean suggestion), every duplicate key, every value of
// the wrong type and every null is reported at once as FieldErrors,
// wrapped in a *SourceError naming source. A YAML/JSON syntax error is
// reported alone since nothing after it can be trusted. Parse neither
// fills defaults (see Normalize) nor checks values (see Validate).
//
// Optional empty lists and maps decode as nil and Bottles and Agents are
// never nil, so a parsed manifest equals the result of parsing its own
// JSON encoding.
func Parse(data []byte, source string) (*Manifest, error) {
	fail := func(err error) (*Manifest, error) {
		return nil, &SourceError{Source: source, Err: err}
	}
	if len(data) > MaxManifestBytes {
		return fail(fmt.Errorf("manifest is %d bytes, over the %d MiB limit", len(data), MaxManifestBytes>>20))
	}
	// Checked up front because the JSON encoder would otherwise silently
	// replace invalid bytes with U+FFFD.
	if !utf8.Valid(data) {
		return fail(errors.New("manifest is not valid UTF-8 (save it as UTF-8)"))
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		var unsupported *json.UnsupportedValueError
		if errors.As(err, &unsupported) {
			return fail(fmt.Errorf("value %s cannot be represented in JSON (quote it if it is meant as a string)", unsupported.Str))
		}
		return fail(fmt.Errorf("not valid YAML or JSON: %w", err))
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return fail(fmt.Errorf("not valid YAML or JSON: %w", err))
	}
	if generic == nil {
		return fail(FieldErrors{{Msg: "manifest is empty", Fix: "define bottles: and agents:"}})
	}

	var c collector
	findDuplicateKeys(data, &c)
	checkShape(manifestShape(), generic, "", &c)
	if err := c.errs.orNil(); err != nil {
		return fail(err)
	}

	var m Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		// checkShape accepts exactly what the structs decode, so this
		// is a bug in checkShape rather than in the manifest.
		return fail(fmt.Errorf("decoding manifest: %w", err))
	}
	m.canonicalize()
	return &m, nil
}

// LoadFile reads, parses, normalizes and validates the manifest at path.
// Every error names path.
func LoadFile(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	m, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	m.Normalize()
	if err := Validate(m); err != nil {
		return nil, &SourceError{Source: path, Err: err}
	}
	return m, nil
}

// Load finds the manifest (see Find), then loads it with LoadFile. It
// returns the path it used so callers can mention it.
func Load(explicit string) (*Manifest, string, error) {
	path, err := Find(explicit)
	if err != nil {
		return nil, "", err
	}
	m, err := LoadFile(path)
	return m, path, err
}

// canonicalize makes a manifest equal to the decoding of its own JSON
// encoding: omitempty lists and maps become nil (the encoder drops them
// when empty), while Bottles and Agents, which are always encoded, become
// non-nil (a nil map would encode as null, which Parse rejects).
func (m *Manifest) canonicalize() {
	if m.Bottles == nil {
		m.Bottles = map[string]*Bottle{}
	}
	if m.Agents == nil {
		m.Agents = map[string]*Agent{}
	}
	for _, b := range m.Bottles {
		if b == nil {
			continue
		}
		if len(b.Git) == 0 {
			b.Git = nil
		}
		if len(b.Allow) == 0 {
			b.Allow = nil
		}
		if len(b.Env) == 0 {
			b.Env = nil
		}
		if b.Egress != nil && len(b.Egress.Routes) == 0 {
			b.Egress.Routes = nil
		}
	}
	for _, a := range m.Agents {
		if a != nil && len(a.Skills) == 0 {
			a.Skills = nil
		}
	}
}

// shape describes what a JSON value must look like to decode into a Go
// type. It is derived from the structs by reflection so that a field
// added to types.go is accepted without touching this file.
type shape struct {
	kind   shapeKind
	fields map[string]*shape // kindObject
	names  []string          // kindObject, sorted
	elem   *shape            // kindMap, kindList
}

type shapeKind int

const (
	kindString shapeKind = iota
	kindBool
	kindObject
	kindMap
	kindList
)

func (k shapeKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindBool:
		return "true or false"
	case kindObject, kindMap:
		return "an object"
	case kindList:
		return "a list"
	}
	return "?"
}

var manifestShape = sync.OnceValue(func() *shape {
	return shapeOf(reflect.TypeFor[Manifest]())
})

func shapeOf(t reflect.Type) *shape {
	switch t.Kind() {
	case reflect.Pointer:
		return shapeOf(t.Elem())
	case reflect.String:
		return &shape{kind: kindString}
	case reflect.Bool:
		return &shape{kind: kindBool}
	case reflect.Slice:
		return &shape{kind: kindList, elem: shapeOf(t.Elem())}
	case reflect.Map:
		return &shape{kind: kindMap, elem: shapeOf(t.Elem())}
	case reflect.Struct:
		s := &shape{kind: kindObject, fields: map[string]*shape{}}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.fields[name] = shapeOf(f.Type)
			s.names = append(s.names, name)
		}
		sort.Strings(s.names)
		return s
	}
	panic(fmt.Sprintf("manifest: no shape for %s", t))
}

// checkShape reports every mismatch between v (a value decoded from JSON
// with UseNumber) and s.
func checkShape(s *shape, v any, path string, c *collector) {
	if v == nil {
		c.add(path, "null is not allowed", nullFix(s.kind))
		return
	}
	switch s.kind {
	case kindString:
		if _, ok := v.(string); !ok {
			c.add(path, "want a string, got "+describe(v), quoteFix(v))
		}
	case kindBool:
		if _, ok := v.(bool); !ok {
			c.add(path, "want true or false, got "+describe(v), "write true or false, without quotes")
		}
	case kindList:
		list, ok := v.([]any)
		if !ok {
			c.add(path, "want a list, got "+describe(v), "write [] for an empty list")
			return
		}
		for i, e := range list {
			checkShape(s.elem, e, joinIndex(path, i), c)
		}
	case kindMap, kindObject:
		obj, ok := v.(map[string]any)
		if !ok {
			if path == "" {
				c.add(path, "manifest must be an object, got "+describe(v), "write a mapping with bottles: and agents:")
			} else {
				c.add(path, "want an object, got "+describe(v), "write {} for an empty object")
			}
			return
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := joinKey(path, k)
			if s.kind == kindMap {
				checkShape(s.elem, obj[k], p, c)
				continue
			}
			fs, known := s.fields[k]
			if !known {
				fix := "known keys: " + strings.Join(s.names, ", ")
				if guess := closest(k, s.names); guess != "" {
					fix = fmt.Sprintf("did you mean %q?", guess)
				}
				c.add(p, "unknown key", fix)
				continue
			}
			checkShape(fs, obj[k], p, c)
		}
	}
}

func nullFix(k shapeKind) string {
	switch k {
	case kindObject, kindMap:
		return "write {} for an empty object, or remove the key"
	case kindList:
		return "write [] for an empty list, or remove the key"
	case kindString:
		return `write "" for an empty string, or remove the key`
	}
	return "write true or false, or remove the key"
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case json.Number:
		return "number " + shorten(v.String())
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// quoteFix explains the usual cause of a non-string where a string
// belongs: YAML reading an unquoted word as a boolean or number.
func quoteFix(v any) string {
	switch v := v.(type) {
	case bool:
		return "quote the value; YAML reads unquoted yes/no/on/off/true/false as booleans"
	case json.Number:
		return fmt.Sprintf("quote the value: %q", shorten(v.String()))
	}
	return ""
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// findDuplicateKeys reports keys that occur twice in one mapping, keys
// YAML reads as booleans (a bottle named no would otherwise become
// "false") and a second YAML document, which the conversion to JSON
// would silently drop. The conversion keeps only the last of duplicated
// keys, so without this a copy-pasted bottle would silently replace the
// original. Merge keys ("<<") are YAML's explicit override mechanism and
// are not reported. Syntax errors are ignored here; the conversion
// reports them.
func findDuplicateKeys(data []byte, c *collector) {
	dec := goyaml.NewDecoder(bytes.NewReader(data))
	var doc goyaml.MapSlice
	err := dec.Decode(&doc)
	var typeErr *goyaml.TypeError
	switch {
	case err == nil:
		dupWalk(doc, "", c)
	case errors.As(err, &typeErr):
		// Not a mapping at the top; checkShape reports that.
	default:
		return
	}
	var next any
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		c.add("", "manifest holds more than one YAML document", "remove the --- separator; only the first document would be read")
	}
}

func dupWalk(v any, path string, c *collector) {
	switch v := v.(type) {
	case goyaml.MapSlice:
		seen := map[string]bool{}
		for _, item := range v {
			k := keyString(item.Key)
			p := joinKey(path, k)
			if seen[k] {
				c.add(p, "duplicate key", "remove or rename one of them; only the last would be used")
				continue
			}
			if _, isBool := item.Key.(bool); isBool {
				c.add(p, "unquoted key is read as a boolean", "quote it; YAML reads unquoted yes/no/on/off/y/n as true or false")
			}
			seen[k] = true
			dupWalk(item.Value, p, c)
		}
	case []any:
		for i, e := range v {
			dupWalk(e, joinIndex(path, i), c)
		}
	}
}

// keyString renders a YAML key the way the JSON conversion does for the
// common scalar kinds.
func keyString(k any) string {
	switch k := k.(type) {
	case string:
		return k
	case nil:
		return "null"
	}
	return fmt.Sprint(k)
}
