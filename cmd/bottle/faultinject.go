//go:build faultinject

package main

import (
	"os"

	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/faults"
)

// In a faultinject build, `bottle launch` injects the faults named by
// $BOT_BOTTLE_FAULT (see faults.Parse), so tests can fail, panic, hang or
// slow down a chosen step of a real launch process.
func init() {
	stepWrapHook = func() (func(dag.Step) dag.Step, error) {
		spec := os.Getenv(faults.EnvVar)
		if spec == "" {
			return nil, nil
		}
		fs, err := faults.Parse(spec)
		if err != nil {
			return nil, err
		}
		return faults.Wrapper(fs...), nil
	}
}
