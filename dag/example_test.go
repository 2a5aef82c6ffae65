package dag_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/bot-bottle/bot-bottle/dag"
)

// funcStep is a step made of functions, as small as a step can be.
type funcStep struct {
	id   string
	deps []string
	run  func(context.Context) error
	undo func(context.Context) error
}

func (s funcStep) ID() string                     { return s.id }
func (s funcStep) Deps() []string                 { return s.deps }
func (s funcStep) Run(ctx context.Context) error  { return s.run(ctx) }
func (s funcStep) Undo(ctx context.Context) error { return s.undo(ctx) }

func Example() {
	ok := func(context.Context) error { return nil }
	network := funcStep{id: "network", run: ok, undo: func(context.Context) error {
		fmt.Println("removing network")
		return nil
	}}
	egress := funcStep{id: "egress", deps: []string{"network"}, run: func(context.Context) error {
		return errors.New("port 8080 already allocated")
	}, undo: ok}
	agent := funcStep{id: "agent", deps: []string{"egress"}, run: ok, undo: ok}

	g, err := dag.New(agent, egress, network) // any declaration order
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := g.Execute(context.Background(), dag.Options{})
	fmt.Println(err)
	for _, s := range res.Steps {
		fmt.Println(s.ID, s.Outcome)
	}
	// Output:
	// removing network
	// step "egress" failed after 1 attempt: port 8080 already allocated
	// network undone
	// egress failed
	// agent skipped
}
