package steps

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// PlanStep is one node of `bottle plan --format json`: the step, its
// dependencies, its retry policy and its per-attempt timeout.
type PlanStep struct {
	ID             string     `json:"id"`
	Deps           []string   `json:"deps"`
	Retry          *PlanRetry `json:"retry"`
	TimeoutSeconds *float64   `json:"timeout_seconds"`
}

// PlanRetry is a step's retry policy in `bottle plan --format json`.
type PlanRetry struct {
	MaxAttempts         int     `json:"max_attempts"`
	InitialDelaySeconds float64 `json:"initial_delay_seconds"`
	Multiplier          float64 `json:"multiplier"`
	MaxDelaySeconds     float64 `json:"max_delay_seconds"`
	Jitter              float64 `json:"jitter"`
}

// Describe lists the graph's steps in topological order.
func Describe(g *dag.Graph) []PlanStep {
	var out []PlanStep
	for _, s := range g.Steps() {
		ps := PlanStep{ID: s.ID(), Deps: append([]string{}, s.Deps()...)}
		if r, ok := s.(dag.Retrier); ok {
			if p := r.RetryPolicy(); p != nil && p.MaxAttempts > 1 {
				ps.Retry = &PlanRetry{p.MaxAttempts, p.InitialDelay.Seconds(), p.Multiplier, p.MaxDelay.Seconds(), p.Jitter}
			}
		}
		if t, ok := s.(dag.Timeouter); ok && t.Timeout() > 0 {
			v := t.Timeout().Seconds()
			ps.TimeoutSeconds = &v
		}
		out = append(out, ps)
	}
	return out
}

// WritePlanJSON writes the plan and its graph as JSON.
func WritePlanJSON(w io.Writer, p *plan.Plan, g *dag.Graph) error {
	doc := struct {
		Agent   string     `json:"agent"`
		Backend string     `json:"backend"`
		Plan    *plan.Plan `json:"plan"`
		Steps   []PlanStep `json:"steps"`
	}{p.Agent, p.Backend, p, Describe(g)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// WritePlanText writes the plan and its graph for people.
func WritePlanText(w io.Writer, p *plan.Plan, g *dag.Graph) error {
	fmt.Fprintf(w, "agent %s in bottle %s on %s\n", p.Agent, p.Bottle, p.Backend)
	fmt.Fprintf(w, "slug      %s\n", p.Slug)
	fmt.Fprintf(w, "state     %s\n", p.StateDir)
	fmt.Fprintf(w, "firewall  %s\n", p.Firewall)
	if p.Names.Machine != "" {
		fmt.Fprintf(w, "machine   %s\n", p.Names.Machine)
	} else {
		fmt.Fprintf(w, "agent     %s\n", p.Names.Agent)
	}
	fmt.Fprintf(w, "networks  %s (internal), %s\n", p.Names.Bundle, p.Names.Outside)
	for _, r := range p.Routes {
		if r.TokenEnv != "" {
			fmt.Fprintf(w, "route     %s (%s from $%s)\n", r.Host, r.Header, r.TokenEnv)
		} else {
			fmt.Fprintf(w, "route     %s\n", r.Host)
		}
	}
	for _, a := range p.Allow {
		fmt.Fprintf(w, "allow     %s\n", a)
	}
	for _, r := range p.Git {
		fmt.Fprintf(w, "git       %s <- %s\n", r.Name, r.Upstream)
	}
	for _, s := range p.Skills {
		fmt.Fprintf(w, "skill     %s -> %s\n", s.Name, s.GuestDir)
	}
	fmt.Fprintf(w, "prompt    %s (%d bytes)\n", plan.GuestPromptPath, len(p.Prompt))
	fmt.Fprintln(w, "\nsteps:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tAFTER\tRETRY\tTIMEOUT")
	for _, s := range Describe(g) {
		after := strings.Join(s.Deps, ", ")
		if after == "" {
			after = "-"
		}
		retry := "-"
		if s.Retry != nil {
			retry = fmt.Sprintf("%dx from %s", s.Retry.MaxAttempts, time.Duration(s.Retry.InitialDelaySeconds*float64(time.Second)))
		}
		timeout := "-"
		if s.TimeoutSeconds != nil {
			timeout = time.Duration(*s.TimeoutSeconds * float64(time.Second)).String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.ID, after, retry, timeout)
	}
	return tw.Flush()
}
