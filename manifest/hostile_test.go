package manifest

import (
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostileValues are put, one at a time, into every user-facing field.
var hostileValues = map[string]string{
	"shell":      "$(touch /tmp/pwned)",
	"shell-nosp": "$(touch${IFS}/tmp/pwned)",
	"backticks":  "`id`",
	"separators": "a;b&&c|d>e",
	"quotes":     `it's"quoted"`,
	"newline":    "a\nb",
	"cr":         "a\rb",
	"tab":        "a\tb",
	"escape":     "a\x1b[31mb",
	"option":     "-oProxyCommand=touch",
	"long-opt":   "--upload-pack=touch",
	"traversal":  "../../etc/passwd",
	"dot-dot":    "..",
	"nul":        "a\x00b",
	"rtl":        "abc\u202etxt",
	"zero-width": "a\u200bb",
	"combining":  "e\u0301",
	"huge":       strings.Repeat("a", 10<<20),
	"empty":      "",
}

// hostileField sets a value into one field of a valid manifest and names
// the path an error about it must carry.
type hostileField struct {
	path string
	set  func(m *Manifest, v string)
	// accepted lists the hostile values the field takes; every other one
	// must be rejected at path. An accepted value is only ever passed as a
	// whole argv element, a file's content or an escaped config value (the
	// steps' tests and the hostile launch show it arriving verbatim).
	accepted []string
}

var freeText = []string{"shell", "shell-nosp", "backticks", "separators", "quotes", "option", "long-opt", "traversal", "dot-dot", "rtl", "zero-width", "combining"}

func hostileFields() map[string]hostileField {
	return map[string]hostileField{
		"agent name": {path: "agents", set: func(m *Manifest, v string) {
			m.Agents[v] = m.Agents["demo"]
			delete(m.Agents, "demo")
		}},
		"bottle name": {path: "bottles", set: func(m *Manifest, v string) {
			m.Bottles[v] = m.Bottles["dev"]
			delete(m.Bottles, "dev")
			m.Agents["demo"].Bottle = v
		}},
		"prompt": {path: "agents.demo.prompt", set: func(m *Manifest, v string) { m.Agents["demo"].Prompt = v },
			accepted: append([]string{"newline", "cr", "tab", "escape", "empty"}, freeText...)},
		"skill":        {path: "agents.demo.skills[0]", set: func(m *Manifest, v string) { m.Agents["demo"].Skills = []string{v} }},
		"git Name":     {path: "bottles.dev.git[0].Name", set: func(m *Manifest, v string) { m.Bottles["dev"].Git[0].Name = v }},
		"git Upstream": {path: "bottles.dev.git[0].Upstream", set: func(m *Manifest, v string) { m.Bottles["dev"].Git[0].Upstream = v }},
		"git Upstream path": {path: "bottles.dev.git[0].Upstream",
			set:      func(m *Manifest, v string) { m.Bottles["dev"].Git[0].Upstream = "ssh://git@example.com/" + v },
			accepted: []string{"shell-nosp", "backticks", "separators", "quotes", "option", "long-opt", "traversal", "dot-dot", "rtl", "zero-width", "combining", "empty"}},
		"git IdentityFile": {path: "bottles.dev.git[0].IdentityFile", set: func(m *Manifest, v string) { m.Bottles["dev"].Git[0].IdentityFile = v },
			accepted: []string{"shell", "shell-nosp", "backticks", "separators", "quotes", "traversal", "dot-dot", "rtl", "zero-width", "combining", "empty"}},
		// '<' and '>' delimit the address in "name <email>".
		"git_user name": {path: "bottles.dev.git_user.name", set: func(m *Manifest, v string) { m.Bottles["dev"].GitUser.Name = v },
			accepted: []string{"empty", "shell", "shell-nosp", "backticks", "quotes", "option", "long-opt", "traversal", "dot-dot", "rtl", "zero-width", "combining"}},
		"git_user email": {path: "bottles.dev.git_user.email", set: func(m *Manifest, v string) { m.Bottles["dev"].GitUser.Email = v + "@example.com" },
			accepted: []string{"shell-nosp", "backticks", "quotes", "option", "long-opt", "traversal", "dot-dot", "rtl", "zero-width", "combining"}},
		"allow host": {path: "bottles.dev.allow[0]", set: func(m *Manifest, v string) { m.Bottles["dev"].Allow = []string{v} }},
		"route host": {path: "bottles.dev.egress.routes[0].host", set: func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].Host = v }},
		"token_env":  {path: "bottles.dev.egress.routes[0].token_env", set: func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].TokenEnv = v }, accepted: []string{"empty"}},
		// Backticks and dots are HTTP token characters: a header name made
		// of them cannot split a header.
		"route header": {path: "bottles.dev.egress.routes[0].header", set: func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].Header = v }, accepted: []string{"empty", "backticks", "dot-dot"}},
		"route format": {path: "bottles.dev.egress.routes[0].format", set: func(m *Manifest, v string) { m.Bottles["dev"].Egress.Routes[0].Format = v + " {token}" },
			accepted: append([]string{"empty"}, freeText...)},
		"env key": {path: "bottles.dev.env", set: func(m *Manifest, v string) { m.Bottles["dev"].Env = map[string]string{v: "x"} }},
		"env value": {path: "bottles.dev.env.EDITOR", set: func(m *Manifest, v string) { m.Bottles["dev"].Env["EDITOR"] = v },
			accepted: append([]string{"newline", "cr", "tab", "escape", "empty"}, freeText...)},
		"image":    {path: "bottles.dev.image", set: func(m *Manifest, v string) { m.Bottles["dev"].Image = v }, accepted: []string{"empty"}},
		"firewall": {path: "bottles.dev.firewall", set: func(m *Manifest, v string) { m.Bottles["dev"].Firewall = v }, accepted: []string{"empty"}},
	}
}

// TestHostileValuesInEveryField puts each hostile value into each field:
// it is either accepted (the field's list) or rejected with an error at
// that field's path, short, and free of the control and bidi characters
// it was given.
func TestHostileValuesInEveryField(t *testing.T) {
	for fname, f := range hostileFields() {
		for vname, v := range hostileValues {
			t.Run(fname+"/"+vname, func(t *testing.T) {
				m := baseManifest()
				f.set(m, v)
				err := Validate(m)
				if contains(f.accepted, vname) {
					require.NoError(t, err)
					return
				}
				require.Error(t, err, "%s accepted %s", fname, vname)
				var fe FieldErrors
				require.True(t, errors.As(err, &fe))
				var paths []string
				for _, e := range fe {
					paths = append(paths, e.Path)
				}
				assert.True(t, anyHasPrefix(paths, f.path), "errors at %v, none at %s", paths, f.path)
				for _, line := range strings.Split(err.Error(), "\n") {
					assert.Less(t, len(line), 1024, "an error line is %d bytes", len(line))
					for _, r := range line {
						assert.False(t, unicode.IsControl(r) || unicode.In(r, unicode.Bidi_Control) || r == '\u200b',
							"the error shows %U raw: %q", r, line)
					}
				}
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func anyHasPrefix(list []string, prefix string) bool {
	for _, x := range list {
		if strings.HasPrefix(x, prefix) {
			return true
		}
	}
	return false
}

// TestHostileValuesSchemaAgrees: the JSON Schema editors validate with
// reaches the same verdict as Go on every hostile value, except where it
// cannot express the rule (byte lengths, URL escapes); there it may only
// be more lenient, never stricter.
func TestHostileValuesSchemaAgrees(t *testing.T) {
	sch := compileSchema(t)
	var disagree []string
	for fname, f := range hostileFields() {
		for vname, v := range hostileValues {
			if vname == "huge" || vname == "nul" {
				continue // beyond what a manifest file carries; Go-only
			}
			m := baseManifest()
			f.set(m, v)
			goOK := Validate(m) == nil
			doc, err := json.Marshal(m)
			require.NoError(t, err)
			schemaOK, _ := schemaAccepts(t, sch, doc)
			if goOK && !schemaOK {
				t.Errorf("%s/%s: the schema rejects what Go accepts", fname, vname)
			}
			if goOK != schemaOK {
				disagree = append(disagree, fname+"/"+vname)
			}
		}
	}
	sort.Strings(disagree)
	t.Logf("Go-only rejections: %v", disagree)
}
