package smolmachines

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "list", name))
	require.NoError(t, err)
	return b
}

func TestParseList(t *testing.T) {
	cases := []struct {
		file string
		want []MachineInfo
	}{
		{"array.json", []MachineInfo{
			{Name: "bot-bottle-demo-abc12", State: StateRunning, PID: 4242,
				Image: "/home/u/.cache/bot-bottle/smolvm/0123.tar",
				Labels: backends.Labels{
					backends.LabelSlug: "demo-abc12", backends.LabelAgent: "demo",
					backends.LabelRole: "machine", backends.LabelVersion: "v1",
					backends.LabelBackend: "smolmachines",
				}},
			{Name: "other", State: StateStopped, Image: "alpine"},
		}},
		{"wrapped.json", []MachineInfo{
			{Name: "bot-bottle-x", State: StateCreated, PID: 17, Image: "/t.tar",
				Labels: backends.Labels{"bot-bottle.slug": "x", "flag": "", "k": "v=w"}},
		}},
		{"ndjson.json", []MachineInfo{
			{Name: "a", State: StateRunning, PID: 1, Labels: backends.Labels{"n": "3", "b": "true", "z": ""}},
			{Name: "b", State: StateFailed},
			{Name: "c", State: StateUnreachable},
		}},
		{"empty.json", nil},
		{"blank.json", nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseList(readTestdata(t, tc.file))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseListRejects(t *testing.T) {
	cases := map[string]string{
		"not json":          `ls: not json`,
		"scalar":            `42`,
		"nested array":      `[[{"name":"a"}]]`,
		"entry not object":  `["a"]`,
		"no name":           `[{"state":"running"}]`,
		"empty name":        `[{"name":""}]`,
		"name not string":   `[{"name":7}]`,
		"labels wrong type": `[{"name":"a","labels":"k=v"}]`,
		"label not string":  `[{"name":"a","labels":[1]}]`,
		"truncated":         `[{"name":"a"`,
		"machines wrong":    `{"machines": 3}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseList([]byte(in))
			assert.Error(t, err)
		})
	}
}

func TestParseListKeyCase(t *testing.T) {
	// The exact lower-case key wins whatever the map order.
	for range 20 {
		got, err := ParseList([]byte(`{"NAME":"upper","name":"lower","Name":"title"}`))
		require.NoError(t, err)
		assert.Equal(t, "lower", got[0].Name)
		got, err = ParseList([]byte(`{"NAME":"upper","Name":"title"}`))
		require.NoError(t, err)
		assert.Equal(t, "upper", got[0].Name)
	}
}

func TestParseStatus(t *testing.T) {
	got, err := ParseStatus(readTestdata(t, "status.json"))
	require.NoError(t, err)
	assert.Equal(t, MachineInfo{Name: "bot-bottle-demo-abc12", State: StateRunning, PID: 99,
		Image: "/c/agent.tar", Labels: backends.Labels{"bot-bottle.slug": "demo-abc12"}}, got)

	_, err = ParseStatus([]byte(`[]`))
	assert.Error(t, err)
	_, err = ParseStatus([]byte(`[{"name":"a"},{"name":"b"}]`))
	assert.Error(t, err)
}

// FuzzParseList checks that ParseList never panics, that whatever it
// accepts has names, and that its output survives a JSON round trip
// unchanged (so nothing it returns depends on quirks of the input).
func FuzzParseList(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "list"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(readTestdata(f, e.Name()))
	}
	f.Add([]byte(`{"machines":null}`))
	f.Add([]byte(`[{"name":"a","pid":1e40,"labels":{"k":{"x":[1]}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		infos, err := ParseList(data)
		if err != nil {
			return
		}
		for _, m := range infos {
			if m.Name == "" {
				t.Fatalf("accepted a machine without a name: %+v", m)
			}
			if m.PID < 0 {
				t.Fatalf("negative pid: %+v", m)
			}
		}
		again, err := json.Marshal(infos)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseList(again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		if len(infos) == 0 {
			assert.Empty(t, back)
			return
		}
		assert.Equal(t, infos, back)
	})
}
