package main

import (
	"fmt"
	"strings"
)

// flagSpec describes one subcommand's flags the way smolvm's parser (clap)
// accepts them: long names, optional short aliases, value flags that may
// repeat, boolean switches, and an optional "--"-separated trailing argv.
type flagSpec struct {
	// values maps every spelling ("-e", "--env") to the canonical name.
	values map[string]string
	bools  map[string]string
	// positional is the number of positional operands required.
	positional int
	// trailing allows "-- ARGV...".
	trailing bool
	// required lists canonical value flags that must be given.
	required []string
}

// parsed is a command line read against a flagSpec.
type parsed struct {
	values     map[string][]string
	bools      map[string]bool
	positional []string
	trailing   []string
	// hasTrailing records that "--" was present.
	hasTrailing bool
}

func (p parsed) value(name string) string {
	if v := p.values[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// usageError is a command-line error; like clap, it exits 2 with
// "error: ..." (lower case), unlike the exit-1 "Error: ..." of a failed
// action.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func parseArgs(spec flagSpec, args []string) (parsed, error) {
	p := parsed{values: map[string][]string{}, bools: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if !spec.trailing {
				return p, usagef("unexpected argument '--' found")
			}
			p.trailing, p.hasTrailing = args[i+1:], true
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			p.positional = append(p.positional, a)
			continue
		}
		flag, val, hasVal := strings.Cut(a, "=")
		if name, ok := spec.values[flag]; ok {
			if !hasVal {
				if i+1 >= len(args) {
					return p, usagef("a value is required for '%s <%s>' but none was supplied", flag, strings.ToUpper(name))
				}
				i++
				val = args[i]
			}
			p.values[name] = append(p.values[name], val)
			continue
		}
		if name, ok := spec.bools[flag]; ok && !hasVal {
			p.bools[name] = true
			continue
		}
		return p, usagef("unexpected argument '%s' found", a)
	}
	for _, r := range spec.required {
		if len(p.values[r]) == 0 {
			return p, usagef("the following required arguments were not provided:\n  --%s <%s>", r, strings.ToUpper(r))
		}
	}
	if len(p.positional) != spec.positional {
		return p, usagef("expected %d positional arguments, got %d", spec.positional, len(p.positional))
	}
	return p, nil
}

// The flag sets of the subcommands the simulator implements. Flags smolvm
// accepts but the simulator has no use for (-v, -p, --allow-host, ...) are
// accepted and ignored so that argv written for smolvm parses unchanged.
var (
	createFlags = flagSpec{
		values: map[string]string{
			"--name": "name", "--image": "image", "--cpus": "cpus", "--mem": "mem",
			"-e": "env", "--env": "env", "--label": "label",
			"-v": "volume", "--volume": "volume", "-p": "port", "--port": "port",
			"--allow-host": "allow-host", "--allow-cidr": "allow-cidr",
		},
		bools:    map[string]string{"--net": "net"},
		trailing: true,
		required: []string{"name", "image"},
	}
	nameOnlyFlags = flagSpec{
		values:   map[string]string{"--name": "name"},
		required: []string{"name"},
	}
	execFlags = flagSpec{
		values: map[string]string{
			"--name": "name", "-e": "env", "--env": "env",
			"-w": "workdir", "--workdir": "workdir", "--timeout": "timeout",
		},
		bools: map[string]string{
			"-i": "interactive", "--interactive": "interactive",
			"-t": "tty", "--tty": "tty", "--stream": "stream",
		},
		trailing: true,
		required: []string{"name"},
	}
	cpFlags     = flagSpec{positional: 2}
	deleteFlags = flagSpec{
		values:   map[string]string{"--name": "name"},
		bools:    map[string]string{"-f": "force", "--force": "force"},
		required: []string{"name"},
	}
	lsFlags     = flagSpec{bools: map[string]string{"--json": "json"}}
	statusFlags = flagSpec{
		values:   map[string]string{"--name": "name"},
		bools:    map[string]string{"--json": "json"},
		required: []string{"name"},
	}
)
