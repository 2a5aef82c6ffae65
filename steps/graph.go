package steps

import (
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// Build returns the launch's steps. A step whose condition does not hold
// for this manifest (no git entries, no supervise, no skills, no git
// identity, no .git to copy) is not in the graph at all. Building has no
// side effects, so `bottle plan` prints the same graph a launch runs.
func Build(l *Launch) []dag.Step {
	p := l.Plan
	out := []dag.Step{NewImage(l), NewNetwork(l), NewEgressSidecar(l)}
	if len(p.Git) > 0 {
		out = append(out, NewGitGateSidecar(l))
	}
	if p.Supervise {
		out = append(out, NewSuperviseSidecar(l))
	}
	if p.Firewall == "pipelock" {
		out = append(out, NewPipelockSidecar(l))
	}
	out = append(out, NewBoot(l), NewCA(l), NewPrompt(l))
	if len(p.Skills) > 0 {
		out = append(out, NewSkills(l))
	}
	if p.CopyCwdGit != "" {
		out = append(out, NewWorkspace(l))
	}
	if len(p.Git) > 0 {
		out = append(out, NewGitconfig(l))
	}
	if p.GitUser != nil && (p.GitUser.Name != "" || p.GitUser.Email != "") {
		out = append(out, NewGitUser(l))
	}
	if p.Supervise {
		out = append(out, NewSupervise(l))
	}
	return out
}

// BuildGraph builds and checks the launch graph.
func BuildGraph(l *Launch) (*dag.Graph, error) { return dag.New(Build(l)...) }

var _ = plan.RoleEgress
