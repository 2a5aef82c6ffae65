// Command claudestub stands in for Claude Code in the stub agent image,
// installed there as /usr/local/bin/claude. It needs no network and no
// account, and it is a test instrument: every invocation appends one JSON
// line to /var/log/claude-stub.jsonl (or $CLAUDE_STUB_LOG) with its argv,
// full environment, user and working directory, so tests can check what a
// launch ran and scan for leaked secrets.
//
// It implements just enough of the real CLI for provisioning:
//
//	claude mcp add [--scope local|user|project] [--transport http|sse|stdio] NAME URL|COMMAND [ARGS...]
//	claude mcp list
//	claude --version
//
// Anything else prints one line and exits 0, so an attached launch ends.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// DefaultLog is where invocations are recorded unless CLAUDE_STUB_LOG says
// otherwise. The image build creates it world-writable so any user can
// append.
const DefaultLog = "/var/log/claude-stub.jsonl"

// Version is what --version prints.
const Version = "0.0.0 (Claude Code stub)"

func main() {
	os.Exit(run(os.Args, os.Environ(), os.Stdout, os.Stderr))
}

// Record is one logged invocation.
type Record struct {
	Time string            `json:"time"`
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env"`
	UID  int               `json:"uid"`
	GID  int               `json:"gid"`
	User string            `json:"user"`
	Cwd  string            `json:"cwd"`
	PID  int               `json:"pid"`
}

func run(argv, environ []string, stdout, stderr io.Writer) int {
	env := envMap(environ)
	if err := record(argv, env); err != nil {
		// A stub that silently fails to record would make tests pass
		// for the wrong reason.
		fmt.Fprintf(stderr, "claude-stub: cannot record invocation: %v\n", err)
		return 2
	}
	args := argv[1:]
	switch {
	case len(args) >= 1 && (args[0] == "--version" || args[0] == "-v"):
		fmt.Fprintln(stdout, Version)
		return 0
	case len(args) >= 2 && args[0] == "mcp" && args[1] == "add":
		return mcpAdd(args[2:], env, stdout, stderr)
	case len(args) >= 2 && args[0] == "mcp" && args[1] == "list":
		return mcpList(env, stdout, stderr)
	default:
		fmt.Fprintf(stdout, "claude-stub: %s\n", strings.Join(args, " "))
		return 0
	}
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func logPath(env map[string]string) string {
	if p := env["CLAUDE_STUB_LOG"]; p != "" {
		return p
	}
	return DefaultLog
}

func record(argv []string, env map[string]string) error {
	cwd, _ := os.Getwd()
	rec := Record{
		Time: time.Now().UTC().Format(time.RFC3339Nano),
		Argv: argv,
		Env:  env,
		UID:  os.Getuid(),
		GID:  os.Getgid(),
		Cwd:  cwd,
		PID:  os.Getpid(),
	}
	if u, err := user.LookupId(strconv.Itoa(rec.UID)); err == nil {
		rec.User = u.Username
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	f, err := os.OpenFile(logPath(env), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		return err
	}
	// One write of the whole line: O_APPEND keeps concurrent invocations'
	// lines whole.
	if _, err := f.Write(line); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// server is one MCP server entry, in the shape Claude Code stores.
type server struct {
	Type    string            `json:"type"`
	URL     string            `json:"url,omitempty"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

type addArgs struct {
	scope     string
	transport string
	env       map[string]string
	headers   map[string]string
	pos       []string
}

func parseAdd(args []string) (addArgs, error) {
	a := addArgs{scope: "local", transport: "stdio"}
	value := func(i *int, flag string) (string, error) {
		if k, v, ok := strings.Cut(args[*i], "="); ok && strings.HasPrefix(k, "--") {
			return v, nil
		}
		if *i+1 >= len(args) {
			return "", fmt.Errorf("%s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		flag, _, _ := strings.Cut(arg, "=")
		switch flag {
		case "-s", "--scope":
			v, err := value(&i, flag)
			if err != nil {
				return a, err
			}
			a.scope = v
		case "-t", "--transport":
			v, err := value(&i, flag)
			if err != nil {
				return a, err
			}
			a.transport = v
		case "-e", "--env":
			v, err := value(&i, flag)
			if err != nil {
				return a, err
			}
			k, val, _ := strings.Cut(v, "=")
			if a.env == nil {
				a.env = map[string]string{}
			}
			a.env[k] = val
		case "-H", "--header":
			v, err := value(&i, flag)
			if err != nil {
				return a, err
			}
			k, val, _ := strings.Cut(v, ":")
			if a.headers == nil {
				a.headers = map[string]string{}
			}
			a.headers[strings.TrimSpace(k)] = strings.TrimSpace(val)
		case "--":
			a.pos = append(a.pos, args[i+1:]...)
			i = len(args)
		default:
			// Options may come anywhere; a stdio command's own options
			// follow "--".
			if strings.HasPrefix(arg, "-") {
				return a, fmt.Errorf("unknown option %s", arg)
			}
			a.pos = append(a.pos, arg)
		}
	}
	switch a.scope {
	case "local", "user", "project":
	default:
		return a, fmt.Errorf("invalid scope %q (local, user or project)", a.scope)
	}
	switch a.transport {
	case "http", "sse":
		if len(a.pos) != 2 {
			return a, errors.New("usage: claude mcp add --transport " + a.transport + " NAME URL")
		}
	case "stdio":
		if len(a.pos) < 2 {
			return a, errors.New("usage: claude mcp add NAME COMMAND [ARGS...]")
		}
	default:
		return a, fmt.Errorf("invalid transport %q (stdio, sse or http)", a.transport)
	}
	return a, nil
}

func mcpAdd(args []string, env map[string]string, stdout, stderr io.Writer) int {
	a, err := parseAdd(args)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	name := a.pos[0]
	s := server{Type: a.transport, Env: a.env, Headers: a.headers}
	if a.transport == "stdio" {
		s.Command, s.Args = a.pos[1], a.pos[2:]
	} else {
		s.URL = a.pos[1]
	}
	path, keys, err := scopeLocation(a.scope, env)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	if err := mergeServer(path, keys, name, s); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "Added %s MCP server %s to %s config\n", a.transport, name, a.scope)
	return 0
}

// scopeLocation says which file holds a scope's servers and the JSON keys
// leading to its mcpServers object, as Claude Code lays them out: user
// scope at the top of ~/.claude.json, local scope under the project's path
// in ~/.claude.json, project scope in ./.mcp.json.
func scopeLocation(scope string, env map[string]string) (string, []string, error) {
	switch scope {
	case "project":
		cwd, err := os.Getwd()
		if err != nil {
			return "", nil, err
		}
		return filepath.Join(cwd, ".mcp.json"), []string{"mcpServers"}, nil
	}
	home := env["HOME"]
	if home == "" {
		return "", nil, errors.New("HOME is not set")
	}
	path := filepath.Join(home, ".claude.json")
	if scope == "user" {
		return path, []string{"mcpServers"}, nil
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", nil, err
	}
	return path, []string{"projects", cwd, "mcpServers"}, nil
}

// mergeServer sets keys...[name] = s in the JSON file at path, keeping every
// other key, and replaces the file atomically.
func mergeServer(path string, keys []string, name string, s server) error {
	doc := map[string]any{}
	mode := fs.FileMode(0o600)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(strings.TrimSpace(string(data))) > 0 {
			if err := json.Unmarshal(data, &doc); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	obj := doc
	for _, k := range keys {
		next, ok := obj[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[k] = next
		}
		obj = next
	}
	obj[name] = s
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(out, '\n'), mode)
}

func mcpList(env map[string]string, stdout, stderr io.Writer) int {
	type entry struct {
		name string
		s    server
	}
	var all []entry
	for _, scope := range []string{"local", "user", "project"} {
		path, keys, err := scopeLocation(scope, env)
		if err != nil {
			continue
		}
		servers, err := readServers(path, keys)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		names := make([]string, 0, len(servers))
		for n := range servers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			all = append(all, entry{n, servers[n]})
		}
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "No MCP servers configured.")
		return 0
	}
	for _, e := range all {
		target := e.s.URL
		if e.s.Type == "stdio" {
			target = strings.Join(append([]string{e.s.Command}, e.s.Args...), " ")
		}
		fmt.Fprintf(stdout, "%s: %s (%s)\n", e.name, target, strings.ToUpper(e.s.Type))
	}
	return 0
}

func readServers(path string, keys []string) (map[string]server, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var doc any
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range keys {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, nil
		}
		doc = m[k]
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var out map[string]server
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%s: mcpServers: %w", path, err)
	}
	return out, nil
}
