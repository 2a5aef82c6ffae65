package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// errorLines returns the one-line renderings of the FieldErrors inside
// err, failing the test when err carries none.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	var fe FieldErrors
	require.Error(t, err)
	require.True(t, errors.As(err, &fe), "want FieldErrors, got %T: %v", err, err)
	return strings.Split(fe.Error(), "\n")
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

func TestParsePythonOriginal(t *testing.T) {
	m, err := Parse(readTestdata(t, "python-original.json"), "python-original.json")
	require.NoError(t, err)

	want := &Manifest{
		Bottles: map[string]*Bottle{"dev": {
			Git: []GitEntry{{
				Name:         "claude-bottle",
				Upstream:     "ssh://git@host/repo.git",
				IdentityFile: "~/.ssh/id_ed25519",
			}},
			GitUser:   &GitUser{Name: "Eric", Email: "eric@dideric.is"},
			Supervise: true,
			Egress: &Egress{Routes: []Route{
				{Host: "api.anthropic.com", TokenEnv: "ANTHROPIC_API_KEY"},
			}},
		}},
		Agents: map[string]*Agent{"demo": {
			Bottle: "dev",
			Prompt: "",
			Skills: []string{"init-prd", "verify"},
		}},
	}
	assert.Equal(t, want, m)
	assert.NoError(t, Validate(m))

	m.Normalize()
	assert.NoError(t, Validate(m))
	r := m.Bottles["dev"].Routes()[0]
	assert.Equal(t, "Authorization", r.Header)
	assert.Equal(t, "Bearer {token}", r.Format)
	assert.Equal(t, FirewallBuiltin, m.Bottles["dev"].Firewall)
}

func TestParseGoodFull(t *testing.T) {
	m, err := Parse(readTestdata(t, "good-full.yaml"), "good-full.yaml")
	require.NoError(t, err)
	require.NoError(t, Validate(m))

	dev := m.Bottles["dev"]
	require.NotNil(t, dev)
	assert.Len(t, dev.Git, 3)
	assert.True(t, dev.Git[2].AllowForce)
	assert.Equal(t, "git@github.com:example/notes.git", dev.Git[1].Upstream)
	assert.Equal(t, &GitUser{Name: "Agent Smith", Email: "agent@example.com"}, dev.GitUser)
	assert.Equal(t, Route{Host: "api.anthropic.com", TokenEnv: "ANTHROPIC_API_KEY", Header: "x-api-key", Format: "{token}"}, dev.Routes()[0])
	assert.Equal(t, []string{"registry.npmjs.org", "*.githubusercontent.com"}, dev.Allow)
	assert.Equal(t, map[string]string{"EDITOR": "vi", "GIT_PAGER": "cat"}, dev.Env)
	assert.Equal(t, FirewallPipelock, dev.Firewall)
	assert.Contains(t, m.Agents["demo"].Prompt, "`ticks`")
	assert.Equal(t, []string{"ci", "dev"}, m.BottleNames())
	assert.Equal(t, []string{"demo", "nightly"}, m.AgentNames())
}

// TestGoodFullUsesEveryKey keeps good-full.yaml complete as fields are
// added to the structs.
func TestGoodFullUsesEveryKey(t *testing.T) {
	var doc any
	require.NoError(t, jsonFromYAML(readTestdata(t, "good-full.yaml"), &doc))
	used := map[string]bool{}
	var walk func(s *shape, v any, path string)
	walk = func(s *shape, v any, path string) {
		switch s.kind {
		case kindObject:
			obj, _ := v.(map[string]any)
			for _, name := range s.names {
				p := path + "." + name
				if child, ok := obj[name]; ok {
					used[p] = true
					walk(s.fields[name], child, p)
				}
			}
		case kindMap:
			obj, _ := v.(map[string]any)
			for _, child := range obj {
				walk(s.elem, child, path+".*")
			}
		case kindList:
			list, _ := v.([]any)
			for _, child := range list {
				walk(s.elem, child, path+"[]")
			}
		}
	}
	walk(manifestShape(), doc, "")

	var all []string
	var list func(s *shape, path string)
	list = func(s *shape, path string) {
		switch s.kind {
		case kindObject:
			for _, name := range s.names {
				all = append(all, path+"."+name)
				list(s.fields[name], path+"."+name)
			}
		case kindMap:
			list(s.elem, path+".*")
		case kindList:
			list(s.elem, path+"[]")
		}
	}
	list(manifestShape(), "")
	require.Greater(t, len(all), 20)
	for _, key := range all {
		assert.True(t, used[key], "good-full.yaml does not use %s", key)
	}
}

func TestParseYAMLAndJSONAgree(t *testing.T) {
	yamlDoc := `
bottles:
  dev:
    git:
      - {Name: r, Upstream: "git@h:r.git"}
    supervise: true
agents:
  demo: {bottle: dev, prompt: hi}
`
	jsonDoc := `{"bottles":{"dev":{"git":[{"Name":"r","Upstream":"git@h:r.git"}],"supervise":true}},
	  "agents":{"demo":{"bottle":"dev","prompt":"hi"}}}`
	a, err := Parse([]byte(yamlDoc), "a.yaml")
	require.NoError(t, err)
	b, err := Parse([]byte(jsonDoc), "b.json")
	require.NoError(t, err)
	assert.Equal(t, a, b)
}

func TestParseBadKeysReportsEverything(t *testing.T) {
	_, err := Parse(readTestdata(t, "bad-keys.yaml"), "bad-keys.yaml")
	assert.Equal(t, []string{
		`agents.demo.bottle: want a string, got boolean false (quote the value; YAML reads unquoted yes/no/on/off/true/false as booleans)`,
		`agents.demo.promt: unknown key (did you mean "prompt"?)`,
		`agents.demo.skills: want a list, got a string (write [] for an empty list)`,
		`bottles.dev.egress.route: unknown key (did you mean "routes"?)`,
		`bottles.dev.git[0].name: unknown key (did you mean "Name"?)`,
		`bottles.dev.gti: unknown key (did you mean "git"?)`,
		`bottles.dev.supervise: want true or false, got a string (write true or false, without quotes)`,
		`bottles.qa: duplicate key (remove or rename one of them; only the last would be used)`,
	}, errorLines(t, err))

	var se *SourceError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "bad-keys.yaml", se.Source)
	assert.True(t, strings.HasPrefix(err.Error(), "bad-keys.yaml: 8 problems:\n  agents.demo.bottle: "), err.Error())
}

func TestParseShapeErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"top level list", `[1, 2]`,
			[]string{`(top level): manifest must be an object, got a list (write a mapping with bottles: and agents:)`}},
		{"top level string", `hello`,
			[]string{`(top level): manifest must be an object, got a string (write a mapping with bottles: and agents:)`}},
		{"empty", "", []string{`(top level): manifest is empty (define bottles: and agents:)`}},
		{"comment only", "# nothing\n", []string{`(top level): manifest is empty (define bottles: and agents:)`}},
		{"unknown top-level key", `{"bottles": {}, "agents": {}, "agent": {}}`,
			[]string{`agent: unknown key (did you mean "agents"?)`}},
		{"unknown key far from any", `{"bottles": {}, "agents": {}, "zzzzzz": 1}`,
			[]string{`zzzzzz: unknown key (known keys: agents, bottles)`}},
		{"case and underscore variants", `{"bottles": {"d": {"git": [{"name": "x", "upstream": "y", "identity_file": "z"}], "Git_User": {}}}}`,
			[]string{
				`bottles.d.Git_User: unknown key (did you mean "git_user"?)`,
				`bottles.d.git[0].identity_file: unknown key (did you mean "IdentityFile"?)`,
				`bottles.d.git[0].name: unknown key (did you mean "Name"?)`,
				`bottles.d.git[0].upstream: unknown key (did you mean "Upstream"?)`,
			}},
		{"null bottle", "bottles:\n  dev:\nagents: {}\n",
			[]string{`bottles.dev: null is not allowed (write {} for an empty object, or remove the key)`}},
		{"null string", `{"agents": {"a": {"bottle": null}}}`,
			[]string{`agents.a.bottle: null is not allowed (write "" for an empty string, or remove the key)`}},
		{"null list", `{"agents": {"a": {"skills": null}}}`,
			[]string{`agents.a.skills: null is not allowed (write [] for an empty list, or remove the key)`}},
		{"number for string", `{"agents": {"a": {"prompt": 12}}}`,
			[]string{`agents.a.prompt: want a string, got number 12 (quote the value: "12")`}},
		{"object for list", `{"bottles": {"d": {"allow": {"a": 1}}}}`,
			[]string{`bottles.d.allow: want a list, got an object (write [] for an empty list)`}},
		{"list for object", `{"bottles": []}`,
			[]string{`bottles: want an object, got a list (write {} for an empty object)`}},
		{"number in list of strings", `{"agents": {"a": {"skills": ["x", 3]}}}`,
			[]string{`agents.a.skills[1]: want a string, got number 3 (quote the value: "3")`}},
		{"env value not a string", "bottles:\n  d:\n    env:\n      DEBUG: true\n",
			[]string{`bottles.d.env.DEBUG: want a string, got boolean true (quote the value; YAML reads unquoted yes/no/on/off/true/false as booleans)`}},
		{"hostile key is quoted in the path", "bottles:\n  d:\n    \"x\\ny\\u001b[31m\": 1\n",
			[]string{`bottles.d["x\ny\x1b[31m"]: unknown key (known keys: allow, egress, env, firewall, git, git_user, image, supervise)`}},
		{"duplicate JSON keys", `{"agents": {"a": {"bottle": "x", "bottle": "y"}}}`,
			[]string{`agents.a.bottle: duplicate key (remove or rename one of them; only the last would be used)`}},
		{"two documents", "bottles: {}\nagents: {}\n---\nbottles: {}\n",
			[]string{`(top level): manifest holds more than one YAML document (remove the --- separator; only the first document would be read)`}},
		{"boolean keys", "bottles:\n  no: {}\n  \"yes\": {}\n",
			[]string{`bottles.false: unquoted key is read as a boolean (quote it; YAML reads unquoted yes/no/on/off/y/n as true or false)`}},
		{"duplicate nested in list", "bottles:\n  d:\n    git:\n      - Name: a\n        Name: b\n",
			[]string{`bottles.d.git[0].Name: duplicate key (remove or rename one of them; only the last would be used)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "m.yaml")
			assert.Equal(t, tt.want, errorLines(t, err))
		})
	}
}

func TestParseMergeKeyOverrideIsNotADuplicate(t *testing.T) {
	doc := `
bottles:
  base: &base
    supervise: false
    firewall: builtin
  dev:
    <<: *base
    supervise: true
agents:
  demo: {bottle: dev}
`
	m, err := Parse([]byte(doc), "m.yaml")
	require.NoError(t, err)
	assert.True(t, m.Bottles["dev"].Supervise)
	assert.Equal(t, "builtin", m.Bottles["dev"].Firewall)
}

func TestParseSyntaxErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"bad yaml":  "bottles:\n  dev: [\n",
		"bad json":  `{"bottles": {,}}`,
		"tab yaml":  "bottles:\n\tdev: {}\n",
		"nan value": "agents:\n  a:\n    prompt: .nan\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc), "m.yaml")
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "m.yaml: "), err.Error())
			var fe FieldErrors
			if name != "nan value" {
				assert.False(t, errors.As(err, &fe))
				assert.Contains(t, err.Error(), "not valid YAML or JSON")
			}
		})
	}
}

func TestParseRejectsInvalidUTF8(t *testing.T) {
	_, err := Parse([]byte("agents:\n  a:\n    prompt: \"\xff\"\n"), "m.yaml")
	require.Error(t, err)
	assert.Equal(t, "m.yaml: manifest is not valid UTF-8 (save it as UTF-8)", err.Error())
}

func TestParseRejectsOversizedInput(t *testing.T) {
	data := []byte(`{"agents":{"a":{"prompt":"` + strings.Repeat("x", MaxManifestBytes) + `"}}}`)
	_, err := Parse(data, "big.json")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over the 8 MiB limit")
}

func TestParseCanonicalizesEmptyCollections(t *testing.T) {
	doc := `{"bottles": {"d": {"git": [], "allow": [], "env": {}, "egress": {"routes": []}}},
	         "agents": {"a": {"bottle": "d", "skills": []}}}`
	m, err := Parse([]byte(doc), "m.json")
	require.NoError(t, err)
	d := m.Bottles["d"]
	assert.Nil(t, d.Git)
	assert.Nil(t, d.Allow)
	assert.Nil(t, d.Env)
	assert.Nil(t, d.Egress.Routes)
	assert.Nil(t, m.Agents["a"].Skills)

	again, err := Parse(mustJSON(t, m), "again.json")
	require.NoError(t, err)
	assert.Equal(t, m, again)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestLoadFile(t *testing.T) {
	m, err := LoadFile(filepath.Join("testdata", "good-full.yaml"))
	require.NoError(t, err)
	// LoadFile normalizes.
	assert.Equal(t, DefaultHeader, m.Bottles["dev"].Routes()[1].Header)
	assert.NotNil(t, m.Bottles["ci"].Env)

	_, err = LoadFile(filepath.Join("testdata", "bad-many.yaml"))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), filepath.Join("testdata", "bad-many.yaml")+": "), err.Error())
	assert.Greater(t, len(errorLines(t, err)), 5)

	_, err = LoadFile(filepath.Join("testdata", "missing.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadFileTooBig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bottle.yaml")
	require.NoError(t, os.WriteFile(path, make([]byte, MaxManifestBytes+10), 0o600))
	_, err := LoadFile(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over the 8 MiB limit")
}

func TestLoadExplicit(t *testing.T) {
	want := filepath.Join("testdata", "python-original.json")
	m, path, err := Load(want)
	require.NoError(t, err)
	assert.Equal(t, want, path)
	assert.Contains(t, m.Agents, "demo")

	_, _, err = Load(filepath.Join("testdata", "nope.yaml"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "given with -f")
}

// jsonFromYAML decodes YAML or JSON into v the way the schema tests see
// a document.
func jsonFromYAML(data []byte, v any) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(js, v)
}
