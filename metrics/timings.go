package metrics

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// timingsSchema is the JSON Schema (draft 2020-12) of the timings file.
//
//go:embed timings.schema.json
var timingsSchema []byte

// TimingsSchema returns the JSON Schema the timings file conforms to, for
// consumers that validate it (and for `bottle` to print).
func TimingsSchema() []byte { return append([]byte(nil), timingsSchema...) }

// Timings is the machine-readable record of one launch (`--timings FILE`).
// Durations are in seconds; offsets are from the launch start. Step IDs are
// the same strings as in `bottle plan`, metric labels and errors.
type Timings struct {
	Slug                string       `json:"slug"`
	Agent               string       `json:"agent"`
	Backend             string       `json:"backend"`
	StartedAt           time.Time    `json:"started_at"` // RFC 3339 with nanoseconds
	WallSeconds         float64      `json:"wall_seconds"`
	CriticalPathSeconds float64      `json:"critical_path_seconds"`
	CriticalPath        []string     `json:"critical_path"`
	Steps               []StepTiming `json:"steps"`
}

// StepTiming is one step of Timings, in the order steps started (steps
// that never started last).
type StepTiming struct {
	ID                 string   `json:"id"`
	Deps               []string `json:"deps"`
	StartOffsetSeconds float64  `json:"start_offset_seconds"`
	DurationSeconds    float64  `json:"duration_seconds"`
	Attempts           int      `json:"attempts"`
	Outcome            string   `json:"outcome"`
	Error              string   `json:"error,omitempty"`
}

// NewTimings converts an execution result. Slices are never nil, so the
// JSON has [] rather than null for an empty path or a step without deps.
func NewTimings(res *dag.Result, slug, agent, backend string) Timings {
	t := Timings{
		Slug:                slug,
		Agent:               agent,
		Backend:             backend,
		StartedAt:           res.StartedAt,
		WallSeconds:         res.Wall.Seconds(),
		CriticalPathSeconds: res.CriticalPathDuration.Seconds(),
		CriticalPath:        append([]string{}, res.CriticalPath...),
		Steps:               make([]StepTiming, 0, len(res.Steps)),
	}
	for _, s := range res.Steps {
		st := StepTiming{
			ID:                 s.ID,
			Deps:               append([]string{}, s.Deps...),
			StartOffsetSeconds: s.Start.Seconds(),
			DurationSeconds:    s.Duration.Seconds(),
			Attempts:           s.Attempts,
			Outcome:            string(s.Outcome),
		}
		if s.Err != nil {
			st.Error = s.Err.Error()
		}
		t.Steps = append(t.Steps, st)
	}
	return t
}

// EncodeTimings writes t as indented JSON followed by a newline.
func EncodeTimings(w io.Writer, t Timings) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t); err != nil {
		return fmt.Errorf("encode timings: %w", err)
	}
	return nil
}

// WriteTimings writes t to path, replacing the file atomically; the path
// "-" writes to stdout instead (os.Stdout when stdout is nil).
func WriteTimings(path string, t Timings, stdout io.Writer) error {
	if path == "-" {
		if stdout == nil {
			stdout = os.Stdout
		}
		return EncodeTimings(stdout, t)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return EncodeTimings(w, t) })
}
