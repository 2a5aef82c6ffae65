package main

import (
	"context"
	"fmt"
	"os"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/internal/launcher"
)

// newMachines connects the smolmachines backend: the smolvm CLI named by
// --smolvm, $BOT_BOTTLE_SMOLVM or PATH, and the engine that exports the
// agent image to the tar smolvm boots from.
func newMachines(eng *docker.Engine, flagPath string) (*launcher.SmolMachines, error) {
	path, err := smolmachines.ResolvePath(flagPath)
	if err != nil {
		return nil, err
	}
	return &launcher.SmolMachines{CLI: smolmachines.NewCLI(path), Images: eng.Client()}, nil
}

// attachMachine runs req in a machine with this process's stdio.
func attachMachine(ctx context.Context, m launcher.Machines, name string, req backends.ExecRequest, tty bool) (int, error) {
	sm, ok := m.(*launcher.SmolMachines)
	if !ok {
		return 0, fmt.Errorf("machine %s: no smolvm CLI", name)
	}
	return smolmachines.NewMachine(sm.CLI, name).Attach(ctx, req, os.Stdin, os.Stdout, os.Stderr, tty)
}
