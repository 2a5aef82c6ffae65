package manifest

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("schema.json", doc))
	sch, err := c.Compile("schema.json")
	require.NoError(t, err)
	return sch
}

// schemaAccepts validates a YAML or JSON document against the schema.
func schemaAccepts(t *testing.T, sch *jsonschema.Schema, doc []byte) (bool, error) {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	require.NoError(t, err)
	err = sch.Validate(inst)
	return err == nil, err
}

func goAccepts(doc []byte) (bool, error) {
	m, err := Parse(doc, "doc")
	if err != nil {
		return false, err
	}
	err = Validate(m)
	return err == nil, err
}

func TestSchemaIsACopy(t *testing.T) {
	s := Schema()
	s[0] = 'X'
	assert.Equal(t, byte('{'), Schema()[0])
}

func TestSchemaAndGoAgree(t *testing.T) {
	sch := compileSchema(t)
	const base = "bottles:\n  dev: {}\nagents:\n  demo: {bottle: dev}\n"
	// withBottle and withAgent write a one-bottle, one-agent manifest
	// with the given body.
	withBottle := func(body string) string {
		return "bottles:\n  dev:\n" + indent(body, "    ") + "agents:\n  demo: {bottle: dev}\n"
	}
	withAgent := func(body string) string {
		return "bottles:\n  dev: {}\nagents:\n  demo:\n    bottle: dev\n" + indent(body, "    ")
	}
	tests := []struct {
		name  string
		doc   string
		valid bool
		// goOnly marks mistakes JSON Schema cannot express; the schema
		// accepts them and only Go rejects them.
		goOnly bool
	}{
		{name: "python original", doc: string(readTestdata(t, "python-original.json")), valid: true},
		{name: "every key", doc: string(readTestdata(t, "good-full.yaml")), valid: true},
		{name: "minimal", doc: base, valid: true},
		{name: "free text with shell syntax", doc: withAgent("prompt: \"$(id); rm -rf / `x` 'q' \\u202e\"\n"), valid: true},
		{name: "wildcard allow", doc: withBottle("allow: ['*.example.com', localhost]\n"), valid: true},
		{name: "format without token and no token_env", doc: withBottle("egress: {routes: [{host: a.example, format: plain}]}\n"), valid: true},
		{name: "empty optional strings", doc: withBottle("image: ''\nfirewall: ''\ngit_user: {name: '', email: ''}\negress: {routes: [{host: a.example, token_env: '', header: '', format: ''}]}\n"), valid: true},
		{name: "every upstream form", doc: withBottle("git:\n" +
			"  - {Name: a, Upstream: 'ssh://git@h.example:22/r.git'}\n" +
			"  - {Name: b, Upstream: 'git@h.example:r.git'}\n" +
			"  - {Name: c, Upstream: 'https://h.example/r'}\n" +
			"  - {Name: d, Upstream: 'git://h.example/r'}\n" +
			"  - {Name: e, Upstream: 'file:///srv/r.git'}\n" +
			"  - {Name: f, Upstream: '/srv/r.git'}\n"), valid: true},

		{name: "unknown key", doc: withBottle("gti: []\n")},
		{name: "unknown top-level key", doc: base + "version: 2\n"},
		{name: "bool as string", doc: withBottle("supervise: \"yes\"\n")},
		{name: "null bottle", doc: "bottles:\n  dev:\nagents:\n  demo: {bottle: dev}\n"},
		{name: "no bottles", doc: "bottles: {}\nagents:\n  demo: {bottle: dev}\n"},
		{name: "no agents key", doc: "bottles:\n  dev: {}\n"},
		{name: "upper-case bottle name", doc: "bottles:\n  Dev: {}\nagents:\n  demo: {bottle: Dev}\n"},
		{name: "agent name too long", doc: "bottles:\n  dev: {}\nagents:\n  " + strings.Repeat("a", 32) + ": {bottle: dev}\n"},
		{name: "agent without bottle", doc: "bottles:\n  dev: {}\nagents:\n  demo: {prompt: hi}\n"},
		{name: "agent names a missing bottle", doc: "bottles:\n  dev: {}\nagents:\n  demo: {bottle: prod}\n", goOnly: true},
		{name: "duplicate git Name", doc: withBottle("git:\n  - {Name: a, Upstream: /srv/a}\n  - {Name: a, Upstream: /srv/b}\n"), goOnly: true},
		{name: "duplicate route host", doc: withBottle("egress: {routes: [{host: a.example}, {host: a.example}]}\n"), goOnly: true},
		{name: "duplicate key", doc: "bottles:\n  dev: {}\n  dev: {}\nagents:\n  demo: {bottle: dev}\n", goOnly: true},
		{name: "prompt over 1 MiB in bytes", doc: withAgent("prompt: " + strings.Repeat("é", MaxPromptBytes/2+1) + "\n"), goOnly: true},
		{name: "prompt over 1 MiB in characters", doc: withAgent("prompt: " + strings.Repeat("x", MaxPromptBytes+1) + "\n")},
		{name: "git Name dot", doc: withBottle("git: [{Name: '.', Upstream: /srv/a}]\n")},
		{name: "git Name with slash", doc: withBottle("git: [{Name: a/b, Upstream: /srv/a}]\n")},
		{name: "git entry without Upstream", doc: withBottle("git: [{Name: a}]\n")},
		{name: "upstream not a URL", doc: withBottle("git: [{Name: a, Upstream: foo}]\n")},
		{name: "upstream option", doc: withBottle("git: [{Name: a, Upstream: '-oProxyCommand=x'}]\n")},
		{name: "upstream http", doc: withBottle("git: [{Name: a, Upstream: 'http://h.example/r'}]\n")},
		{name: "upstream newline", doc: withBottle("git: [{Name: a, Upstream: \"/srv/a\\n[core]\"}]\n")},
		{name: "identity file option", doc: withBottle("git: [{Name: a, Upstream: /srv/a, IdentityFile: -i}]\n")},
		{name: "git user name newline", doc: withBottle("git_user: {name: \"a\\nb\"}\n")},
		{name: "email without @", doc: withBottle("git_user: {email: nobody}\n")},
		{name: "host with scheme", doc: withBottle("egress: {routes: [{host: 'https://a.example'}]}\n")},
		{name: "host IP", doc: withBottle("allow: [10.0.0.1]\n")},
		{name: "host with port", doc: withBottle("allow: ['a.example:443']\n")},
		{name: "host too long", doc: withBottle("allow: [" + strings.Repeat(strings.Repeat("a", 60)+".", 5) + "com]\n")},
		{name: "route without host", doc: withBottle("egress: {routes: [{token_env: T}]}\n")},
		{name: "token_env invalid", doc: withBottle("egress: {routes: [{host: a.example, token_env: 1T}]}\n")},
		{name: "format without token", doc: withBottle("egress: {routes: [{host: a.example, token_env: T, format: Bearer}]}\n")},
		{name: "header with space", doc: withBottle("egress: {routes: [{host: a.example, header: 'X Key'}]}\n")},
		{name: "env reserved", doc: withBottle("env: {HTTP_PROXY: x}\n")},
		{name: "env key invalid", doc: withBottle("env: {'A-B': x}\n")},
		{name: "env value NUL", doc: withBottle("env: {A: \"x\\0y\"}\n")},
		{name: "firewall unknown", doc: withBottle("firewall: iptables\n")},
		{name: "image option", doc: withBottle("image: --privileged\n")},
		{name: "skill traversal", doc: withAgent("skills: ['../x']\n")},
		{name: "skill listed twice", doc: withAgent("skills: [a, a]\n")},
		{name: "prompt NUL", doc: withAgent("prompt: \"a\\0b\"\n")},
	}
	var goOnly int
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotGo, goErr := goAccepts([]byte(tt.doc))
			gotSchema, schemaErr := schemaAccepts(t, sch, []byte(tt.doc))
			assert.Equal(t, tt.valid, gotGo, "Go: %v", goErr)
			if tt.goOnly {
				assert.True(t, gotSchema, "marked Go-only, but the schema rejects it: %v", schemaErr)
				return
			}
			assert.Equal(t, tt.valid, gotSchema, "schema: %v", schemaErr)
		})
		if tt.goOnly {
			goOnly++
		}
	}
	assert.GreaterOrEqual(t, len(tests)-goOnly, 15)
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func TestSchemaRejectsBadTestdata(t *testing.T) {
	sch := compileSchema(t)
	for _, name := range []string{"bad-many.yaml", "bad-keys.yaml"} {
		ok, _ := schemaAccepts(t, sch, readTestdata(t, name))
		assert.False(t, ok, name)
	}
}

// TestSchemaPatternsMatchGo keeps schema.json's patterns and limits
// identical to the ones Validate uses.
func TestSchemaPatternsMatchGo(t *testing.T) {
	var s map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &s))
	at := func(path ...string) any {
		var v any = s
		for _, p := range path {
			obj, ok := v.(map[string]any)
			require.True(t, ok, "schema has no object at %v", path)
			v, ok = obj[p]
			require.True(t, ok, "schema has no %q in %v", p, path)
		}
		return v
	}
	optional := func(p string) string { return "^(?:" + p[1:len(p)-1] + ")?$" }

	assert.Equal(t, namePattern, at("$defs", "name", "pattern"))
	assert.Equal(t, gitNamePattern, at("$defs", "gitEntry", "properties", "Name", "pattern"))
	assert.Equal(t, upstreamPattern, at("$defs", "gitEntry", "properties", "Upstream", "pattern"))
	assert.Equal(t, identityFilePattern, at("$defs", "gitEntry", "properties", "IdentityFile", "pattern"))
	assert.Equal(t, gitUserNamePattern, at("$defs", "gitUser", "properties", "name", "pattern"))
	assert.Equal(t, emailPattern, at("$defs", "gitUser", "properties", "email", "pattern"))
	assert.Equal(t, hostPattern, at("$defs", "host", "pattern"))
	assert.Equal(t, float64(MaxHostLen), at("$defs", "host", "maxLength"))
	assert.Equal(t, optional(envNamePattern), at("$defs", "route", "properties", "token_env", "pattern"))
	assert.Equal(t, headerPattern, at("$defs", "route", "properties", "header", "pattern"))
	assert.Equal(t, formatPattern, at("$defs", "route", "properties", "format", "pattern"))
	assert.Equal(t, imagePattern, at("$defs", "bottle", "properties", "image", "pattern"))
	assert.Equal(t, float64(MaxImageLen), at("$defs", "bottle", "properties", "image", "maxLength"))
	assert.Equal(t, envNamePattern, at("$defs", "bottle", "properties", "env", "propertyNames", "pattern"))
	assert.Equal(t, noNULPattern, at("$defs", "bottle", "properties", "env", "additionalProperties", "pattern"))
	assert.Equal(t, []any{"", FirewallBuiltin, FirewallPipelock}, at("$defs", "bottle", "properties", "firewall", "enum"))
	assert.Equal(t, skillPattern, at("$defs", "agent", "properties", "skills", "items", "pattern"))
	assert.Equal(t, noNULPattern, at("$defs", "agent", "properties", "prompt", "pattern"))
	assert.Equal(t, float64(MaxPromptBytes), at("$defs", "agent", "properties", "prompt", "maxLength"))

	var reserved []string
	for _, v := range at("$defs", "bottle", "properties", "env", "propertyNames", "not", "enum").([]any) {
		reserved = append(reserved, v.(string))
	}
	assert.Equal(t, ReservedEnv, reserved)
}

// TestSchemaCoversEveryField keeps schema.json's properties identical to
// the struct fields, level by level, and checks that every object is
// closed.
func TestSchemaCoversEveryField(t *testing.T) {
	var s map[string]any
	require.NoError(t, json.Unmarshal(Schema(), &s))
	defs := s["$defs"].(map[string]any)
	resolve := func(node map[string]any) map[string]any {
		if ref, ok := node["$ref"].(string); ok {
			return defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		return node
	}
	var check func(sh *shape, node map[string]any, path string)
	check = func(sh *shape, node map[string]any, path string) {
		node = resolve(node)
		switch sh.kind {
		case kindObject:
			assert.Equal(t, false, node["additionalProperties"], "%s is not closed", path)
			props, _ := node["properties"].(map[string]any)
			var names []string
			for k := range props {
				names = append(names, k)
			}
			sort.Strings(names)
			assert.Equal(t, sh.names, names, "properties of %s", path)
			for _, name := range sh.names {
				if p, ok := props[name].(map[string]any); ok {
					check(sh.fields[name], p, path+"."+name)
				}
			}
		case kindMap:
			elem, ok := node["additionalProperties"].(map[string]any)
			require.True(t, ok, "%s: want additionalProperties to be a schema", path)
			check(sh.elem, elem, path+".*")
		case kindList:
			assert.Equal(t, "array", node["type"], path)
			items, ok := node["items"].(map[string]any)
			require.True(t, ok, "%s: want items", path)
			check(sh.elem, items, path+"[]")
		case kindString:
			if _, isEnum := node["enum"]; !isEnum {
				assert.Equal(t, "string", node["type"], path)
			}
		case kindBool:
			assert.Equal(t, "boolean", node["type"], path)
		}
	}
	check(manifestShape(), s, "")
}
