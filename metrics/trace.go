package metrics

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// Chrome trace-event format, as read by Perfetto and chrome://tracing:
// https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
type traceFile struct {
	TraceEvents     []traceEvent   `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit"`
	OtherData       map[string]any `json:"otherData,omitempty"`
}

type traceEvent struct {
	Name string  `json:"name"`
	Cat  string  `json:"cat,omitempty"`
	Ph   string  `json:"ph"`
	Ts   float64 `json:"ts"` // microseconds from the launch start
	Dur  float64 `json:"dur"`
	Pid  int     `json:"pid"`
	Tid  int     `json:"tid"`
	// Cname picks one of the viewer's reserved colours.
	Cname string         `json:"cname,omitempty"`
	Args  map[string]any `json:"args,omitempty"`
}

// Reserved trace-viewer colour names.
const (
	cnameOK        = "good"
	cnameFailed    = "terrible"
	cnameCancelled = "grey"
	cnameUndo      = "yellow"
	cnameUndoBad   = "bad"
)

const tracePid = 1

// traceSlice is one attempt or undo before lane assignment.
type traceSlice struct {
	ev    traceEvent
	start time.Duration
	end   time.Duration
}

// WriteTrace writes res as a Chrome trace (open it in ui.perfetto.dev or
// chrome://tracing). Every attempt of every step is its own slice named
// after the step, so retries appear as consecutive slices with the backoff
// as the gap; failed attempts carry a distinct colour and their error in
// args. Rollbacks are slices named "undo <id>". Slices go on lanes
// (threads) chosen greedily so that slices overlapping in time never share
// one, and all attempts of a step stay on one lane. process names the
// process track (the bottle slug, say); it may be empty.
func WriteTrace(w io.Writer, res *dag.Result, process string) error {
	critical := make(map[string]bool, len(res.CriticalPath))
	for _, id := range res.CriticalPath {
		critical[id] = true
	}

	// A block is what occupies one lane: all attempts of a step, or one
	// undo.
	type block struct {
		start, end time.Duration
		slices     []traceSlice
	}
	var blocks []block
	var skipped []string
	for _, s := range res.Steps {
		if len(s.AttemptSpans) == 0 && s.Duration == 0 && s.Undo == nil {
			skipped = append(skipped, s.ID)
			continue
		}
		if spans := attemptSpans(s); len(spans) > 0 {
			b := block{start: spans[0].Start, end: spans[0].Start}
			for i, sp := range spans {
				outcome, cname := attemptOutcome(s, i, len(spans))
				args := map[string]any{
					"attempt":      i + 1,
					"attempts":     len(spans),
					"outcome":      outcome,
					"step_outcome": string(s.Outcome),
					"critical":     critical[s.ID],
				}
				if len(s.Deps) > 0 {
					args["deps"] = s.Deps
				}
				if sp.Err != "" {
					args["error"] = sp.Err
				}
				b.slices = append(b.slices, traceSlice{
					ev: traceEvent{
						Name: s.ID, Cat: "step", Ph: "X",
						Ts: micros(sp.Start), Dur: micros(sp.Duration),
						Pid: tracePid, Cname: cname, Args: args,
					},
					start: sp.Start, end: sp.Start + sp.Duration,
				})
				b.start = min(b.start, sp.Start)
				b.end = max(b.end, sp.Start+sp.Duration)
			}
			blocks = append(blocks, b)
		}
		if u := s.Undo; u != nil {
			args := map[string]any{"step": s.ID, "outcome": string(s.Outcome)}
			cname := cnameUndo
			if u.Err != "" {
				args["error"] = u.Err
				cname = cnameUndoBad
			}
			blocks = append(blocks, block{start: u.Start, end: u.Start + u.Duration, slices: []traceSlice{{
				ev: traceEvent{
					Name: "undo " + s.ID, Cat: "undo", Ph: "X",
					Ts: micros(u.Start), Dur: micros(u.Duration),
					Pid: tracePid, Cname: cname, Args: args,
				},
				start: u.Start, end: u.Start + u.Duration,
			}}})
		}
	}

	// Interval partitioning: in start order, each block takes the first
	// lane free by its start. Lanes are numbered from 1.
	slices.SortStableFunc(blocks, func(a, b block) int { return cmp.Compare(a.start, b.start) })
	var laneEnd []time.Duration
	events := make([]traceEvent, 0, 2*len(blocks))
	for _, b := range blocks {
		lane := -1
		for i, end := range laneEnd {
			if end <= b.start {
				lane = i
				break
			}
		}
		if lane < 0 {
			lane = len(laneEnd)
			laneEnd = append(laneEnd, 0)
		}
		laneEnd[lane] = b.end
		for _, sl := range b.slices {
			sl.ev.Tid = lane + 1
			events = append(events, sl.ev)
		}
	}

	meta := []traceEvent{{
		Name: "process_name", Ph: "M", Pid: tracePid,
		Args: map[string]any{"name": cmp.Or(process, "bottle launch")},
	}}
	for i := range laneEnd {
		meta = append(meta,
			traceEvent{Name: "thread_name", Ph: "M", Pid: tracePid, Tid: i + 1,
				Args: map[string]any{"name": fmt.Sprintf("lane %d", i+1)}},
			traceEvent{Name: "thread_sort_index", Ph: "M", Pid: tracePid, Tid: i + 1,
				Args: map[string]any{"sort_index": i + 1}})
	}

	other := map[string]any{
		"started_at":            res.StartedAt.Format(time.RFC3339Nano),
		"wall_seconds":          res.Wall.Seconds(),
		"critical_path":         append([]string{}, res.CriticalPath...),
		"critical_path_seconds": res.CriticalPathDuration.Seconds(),
	}
	if len(skipped) > 0 {
		other["skipped"] = skipped
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(traceFile{
		TraceEvents:     append(meta, events...),
		DisplayTimeUnit: "ms",
		OtherData:       other,
	}); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// attemptSpans returns the step's attempts; a result without per-attempt
// spans (a step that ran once, recorded coarsely) counts as one attempt.
func attemptSpans(s dag.StepResult) []dag.Span {
	if len(s.AttemptSpans) > 0 {
		return s.AttemptSpans
	}
	if s.Duration == 0 && s.Attempts == 0 {
		return nil
	}
	sp := dag.Span{Start: s.Start, Duration: s.Duration}
	if s.Err != nil {
		sp.Err = s.Err.Error()
	}
	return []dag.Span{sp}
}

// attemptOutcome says how attempt i of n ended: every attempt but the last
// failed (that is why another followed); the last one ended the way the
// step did, where a step that was later undone still had an ok attempt.
func attemptOutcome(s dag.StepResult, i, n int) (string, string) {
	if i < n-1 {
		return string(dag.OutcomeFailed), cnameFailed
	}
	switch s.Outcome {
	case dag.OutcomeFailed:
		return string(dag.OutcomeFailed), cnameFailed
	case dag.OutcomeCancelled:
		return string(dag.OutcomeCancelled), cnameCancelled
	default:
		return string(dag.OutcomeOK), cnameOK
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
