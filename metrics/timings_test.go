package metrics

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func compileTimingsSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(TimingsSchema()))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat() // started_at must really be a date-time
	require.NoError(t, c.AddResource("timings.schema.json", doc))
	sch, err := c.Compile("timings.schema.json")
	require.NoError(t, err)
	return sch
}

func validate(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err)
	return sch.Validate(inst)
}

func TestTimingsOutputMatchesSchema(t *testing.T) {
	sch := compileTimingsSchema(t)
	for name, res := range map[string]func() Timings{
		"ok":     func() Timings { return NewTimings(launchOK(), "bottle-7f3a", "claude", "docker") },
		"failed": func() Timings { return NewTimings(launchFailed(), "bottle-7f3a", "claude", "smolvm") },
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, EncodeTimings(&buf, res()))
			assert.NoError(t, validate(t, sch, buf.Bytes()), buf.String())
		})
	}
}

func TestTimingsSchemaRejectsMalformedFiles(t *testing.T) {
	sch := compileTimingsSchema(t)
	var buf bytes.Buffer
	require.NoError(t, EncodeTimings(&buf, NewTimings(launchOK(), "s", "a", "docker")))
	good := buf.String()

	for name, bad := range map[string]string{
		"unknown outcome": strings.Replace(good, `"outcome": "ok"`, `"outcome": "great"`, 1),
		"bad date":        strings.Replace(good, `"started_at": "2025-03-14T10:32:45.123456789Z"`, `"started_at": "yesterday"`, 1),
		"negative wall":   strings.Replace(good, `"wall_seconds": 1.5`, `"wall_seconds": -1.5`, 1),
		"missing steps":   `{"slug":"s","agent":"a","backend":"docker","started_at":"2025-03-14T10:32:45Z","wall_seconds":1,"critical_path_seconds":1,"critical_path":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			require.NotEqual(t, good, bad, "the replacement must apply")
			assert.Error(t, validate(t, sch, []byte(bad)))
		})
	}
}

func TestNewTimingsCarriesTheCriticalPathAndSteps(t *testing.T) {
	tm := NewTimings(launchOK(), "bottle-7f3a", "claude", "docker")
	var buf bytes.Buffer
	require.NoError(t, EncodeTimings(&buf, tm))

	// Decode generically: this is what a consumer of the file sees.
	var got struct {
		Slug, Agent, Backend string
		StartedAt            string   `json:"started_at"`
		Wall                 float64  `json:"wall_seconds"`
		CPSeconds            float64  `json:"critical_path_seconds"`
		CP                   []string `json:"critical_path"`
		Steps                []struct {
			ID       string   `json:"id"`
			Deps     []string `json:"deps"`
			Start    float64  `json:"start_offset_seconds"`
			Duration float64  `json:"duration_seconds"`
			Attempts int      `json:"attempts"`
			Outcome  string   `json:"outcome"`
			Error    *string  `json:"error"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))

	assert.Equal(t, "bottle-7f3a", got.Slug)
	assert.Equal(t, "claude", got.Agent)
	assert.Equal(t, "docker", got.Backend)
	assert.Equal(t, "2025-03-14T10:32:45.123456789Z", got.StartedAt, "RFC 3339 with nanoseconds")
	assert.InDelta(t, 1.5, got.Wall, 1e-9)
	// Hand-computed in launchOK's comment: network → git-gate → boot →
	// workspace is the longest chain, 100+600+500+300 ms.
	assert.Equal(t, []string{"network", "sidecar:git-gate", "boot", "workspace"}, got.CP)
	assert.InDelta(t, 1.5, got.CPSeconds, 1e-9)

	require.Len(t, got.Steps, 8)
	ids := make([]string, len(got.Steps))
	for i, s := range got.Steps {
		ids[i] = s.ID
		assert.NotNil(t, s.Deps, "%s: deps is [] rather than null", s.ID)
		assert.Equal(t, "ok", s.Outcome)
	}
	assert.Equal(t, []string{"image", "network", "sidecar:egress", "sidecar:git-gate", "boot", "ca", "prompt", "workspace"}, ids)
	gate := got.Steps[3]
	assert.Equal(t, []string{"network"}, gate.Deps)
	assert.InDelta(t, 0.1, gate.Start, 1e-9)
	assert.InDelta(t, 0.6, gate.Duration, 1e-9)
	assert.Equal(t, 2, gate.Attempts)
	assert.Nil(t, gate.Error, "a step that finally succeeded has no error")

	// The critical path's durations add up to its recorded total.
	var sum float64
	for _, id := range got.CP {
		for _, s := range got.Steps {
			if s.ID == id {
				sum += s.Duration
			}
		}
	}
	assert.InDelta(t, got.CPSeconds, sum, 1e-9)
}

func TestNewTimingsRecordsFailures(t *testing.T) {
	tm := NewTimings(launchFailed(), "s", "a", "smolvm")
	byID := map[string]StepTiming{}
	for _, s := range tm.Steps {
		byID[s.ID] = s
	}
	assert.Equal(t, "failed", byID["sidecar:egress"].Outcome)
	assert.Equal(t, 3, byID["sidecar:egress"].Attempts)
	assert.Contains(t, byID["sidecar:egress"].Error, "address in use")
	assert.Equal(t, "cancelled", byID["sidecar:git-gate"].Outcome)
	assert.Equal(t, "context canceled", byID["sidecar:git-gate"].Error)
	assert.Equal(t, "skipped", byID["boot"].Outcome)
	assert.Zero(t, byID["boot"].Attempts)
	assert.Equal(t, "undone", byID["network"].Outcome)
	assert.Equal(t, "undo_failed", byID["image"].Outcome)
	assert.Contains(t, byID, evilID, "ids are written verbatim; JSON escapes them")
}

func TestWriteTimingsToStdoutAndFile(t *testing.T) {
	tm := NewTimings(launchOK(), "bottle-7f3a", "claude", "docker")
	var want bytes.Buffer
	require.NoError(t, EncodeTimings(&want, tm))

	var stdout bytes.Buffer
	require.NoError(t, WriteTimings("-", tm, &stdout))
	assert.Equal(t, want.String(), stdout.String())

	dir := t.TempDir()
	path := filepath.Join(dir, "timings.json")
	require.NoError(t, os.WriteFile(path, []byte("stale"), 0o600))
	require.NoError(t, WriteTimings(path, tm, &stdout))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want.String(), string(data))
	assert.Equal(t, want.Len(), stdout.Len(), "a file path does not touch stdout")

	var back Timings
	require.NoError(t, json.Unmarshal(data, &back))
	assert.True(t, back.StartedAt.Equal(fixtureStart))
	assert.Equal(t, tm.Steps, back.Steps)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)

	assert.Error(t, WriteTimings(filepath.Join(dir, "no", "such", "dir.json"), tm, nil))
}

func TestTimingsSchemaIsACopy(t *testing.T) {
	a := TimingsSchema()
	a[0] = 'X'
	assert.Equal(t, byte('{'), TimingsSchema()[0])
}
