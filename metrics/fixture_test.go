package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

var fixtureStart = time.Date(2025, 3, 14, 10, 32, 45, 123456789, time.UTC)

// launchOK is a successful launch, timed by hand:
//
//	image             0 ─ 400
//	network           0 ─ 100
//	sidecar:egress  100 ─ 400            (after network)
//	sidecar:git-gate 100 ─ 300 ✗, 400 ─ 700  (after network, one retry)
//	boot            700 ─ 1200           (after image, egress, git-gate)
//	ca, prompt, workspace from 1200: 200, 100, 300 ms (after boot)
//
// Chains weighted by duration: image→boot→workspace 1200 ms,
// network→egress→boot→workspace 1200 ms, network→git-gate→boot→workspace
// 1500 ms: the last is the critical path and equals the wall time.
// The step durations add up to 2500 ms.
func launchOK() *dag.Result {
	step := func(id string, deps []string, start, dur int) dag.StepResult {
		return dag.StepResult{
			ID: id, Deps: deps, Start: ms(start), Duration: ms(dur), Attempts: 1, Outcome: dag.OutcomeOK,
			AttemptSpans: []dag.Span{{Start: ms(start), Duration: ms(dur)}},
		}
	}
	gitGate := dag.StepResult{
		ID: "sidecar:git-gate", Deps: []string{"network"}, Start: ms(100), Duration: ms(600),
		Attempts: 2, Outcome: dag.OutcomeOK,
		AttemptSpans: []dag.Span{
			{Start: ms(100), Duration: ms(200), Err: "dial git-gate: connection refused"},
			{Start: ms(400), Duration: ms(300)},
		},
	}
	return &dag.Result{
		StartedAt: fixtureStart,
		Wall:      ms(1500),
		Steps: []dag.StepResult{
			step("image", nil, 0, 400),
			step("network", nil, 0, 100),
			step("sidecar:egress", []string{"network"}, 100, 300),
			gitGate,
			step("boot", []string{"image", "sidecar:egress", "sidecar:git-gate"}, 700, 500),
			step("ca", []string{"boot"}, 1200, 200),
			step("prompt", []string{"boot"}, 1200, 100),
			step("workspace", []string{"boot"}, 1200, 300),
		},
		CriticalPath:         []string{"network", "sidecar:git-gate", "boot", "workspace"},
		CriticalPathDuration: ms(1500),
	}
}

// evilID is a step ID full of characters that break markup and terminals.
const evilID = "a<b>&\"c'\x1b[31m\x00]]>"

// launchFailed is a launch whose egress sidecar failed after three
// attempts: the git-gate sidecar was cancelled, boot skipped, and the
// completed network and image steps rolled back (image's rollback failed).
func launchFailed() *dag.Result {
	boom := errors.New("egress: exit status 1\nstderr: bind: address in use")
	return &dag.Result{
		StartedAt: fixtureStart,
		Wall:      ms(1000),
		Steps: []dag.StepResult{
			{ID: "image", Start: 0, Duration: ms(300), Attempts: 1, Outcome: dag.OutcomeUndoFailed,
				Err:          errors.New("remove image: in use"),
				AttemptSpans: []dag.Span{{Start: 0, Duration: ms(300)}},
				Undo:         &dag.Span{Start: ms(900), Duration: ms(100), Err: "remove image: in use"}},
			{ID: "network", Start: 0, Duration: ms(100), Attempts: 1, Outcome: dag.OutcomeUndone,
				AttemptSpans: []dag.Span{{Start: 0, Duration: ms(100)}},
				Undo:         &dag.Span{Start: ms(800), Duration: ms(50)}},
			{ID: evilID, Start: ms(10), Duration: ms(40), Attempts: 1, Outcome: dag.OutcomeOK,
				AttemptSpans: []dag.Span{{Start: ms(10), Duration: ms(40)}}},
			{ID: "sidecar:egress", Deps: []string{"network"}, Start: ms(100), Duration: ms(600), Attempts: 3,
				Outcome: dag.OutcomeFailed, Err: boom,
				AttemptSpans: []dag.Span{
					{Start: ms(100), Duration: ms(100), Err: boom.Error()},
					{Start: ms(250), Duration: ms(100), Err: boom.Error()},
					{Start: ms(450), Duration: ms(250), Err: boom.Error()},
				}},
			{ID: "sidecar:git-gate", Deps: []string{"network"}, Start: ms(100), Duration: ms(600), Attempts: 1,
				Outcome: dag.OutcomeCancelled, Err: context.Canceled,
				AttemptSpans: []dag.Span{{Start: ms(100), Duration: ms(600), Err: context.Canceled.Error()}}},
			{ID: "boot", Deps: []string{"image", "sidecar:egress", "sidecar:git-gate"}, Outcome: dag.OutcomeSkipped},
		},
		CriticalPath:         []string{"network", "sidecar:egress"},
		CriticalPathDuration: ms(700),
	}
}
