package gitgate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// RefUpdate is one line of pre-receive input.
type RefUpdate struct {
	Old, New, Ref string
}

// Bounds on hook input; a push of more refs than this is refused.
const (
	maxHookLines = 10000
	maxHookLine  = 4096
)

var hexSHA = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)

func isZero(sha string) bool { return strings.Trim(sha, "0") == "" }

// ParseHookInput parses pre-receive stdin ("<old> <new> <ref>" lines).
// Anything malformed is an error: the hook then refuses the whole push
// rather than guessing.
func ParseHookInput(r io.Reader) ([]RefUpdate, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxHookLine)
	var out []RefUpdate
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			continue
		}
		if len(out) >= maxHookLines {
			return nil, fmt.Errorf("more than %d ref updates", maxHookLines)
		}
		f := strings.Split(line, " ")
		if len(f) != 3 {
			return nil, fmt.Errorf("malformed ref update line %d", len(out)+1)
		}
		u := RefUpdate{Old: f[0], New: f[1], Ref: f[2]}
		if !hexSHA.MatchString(u.Old) || !hexSHA.MatchString(u.New) || len(u.Old) != len(u.New) {
			return nil, fmt.Errorf("malformed object id on line %d", len(out)+1)
		}
		if isZero(u.Old) && isZero(u.New) {
			return nil, fmt.Errorf("line %d updates nothing", len(out)+1)
		}
		if !validRefName(u.Ref) {
			return nil, fmt.Errorf("invalid ref name %q", truncate(u.Ref))
		}
		out = append(out, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading ref updates: %w", err)
	}
	return out, nil
}

// validRefName applies git check-ref-format's rules to a full ref name,
// plus: it must be under refs/ and must not start with '-'.
func validRefName(ref string) bool {
	if !strings.HasPrefix(ref, "refs/") || len(ref) > 1024 || strings.HasSuffix(ref, "/") ||
		strings.HasSuffix(ref, ".") || strings.Contains(ref, "..") || strings.Contains(ref, "//") ||
		strings.Contains(ref, "@{") || ref == "@" {
		return false
	}
	for _, c := range ref {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return false
		}
	}
	for _, comp := range strings.Split(ref, "/") {
		if comp == "" || strings.HasPrefix(comp, ".") || strings.HasSuffix(comp, ".lock") {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// RunHook implements `bottle sidecar git-gate-hook <access|pre-receive>`,
// run by git daemon and git receive-pack through the wrapper scripts. It
// returns the process exit code.
func RunHook(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "git-gate-hook: missing hook name")
		return 2
	}
	cfgPath := os.Getenv(EnvConfig)
	if cfgPath == "" {
		fmt.Fprintln(stderr, "git-gate-hook: "+EnvConfig+" is not set")
		return 2
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "git-gate-hook:", err)
		return 2
	}
	ctx := context.Background()
	switch args[0] {
	case "access":
		return cfg.accessHook(ctx, args[1:], stdout, stderr)
	case "pre-receive":
		dir, err := os.Getwd()
		if err != nil {
			fmt.Fprintln(stderr, "git-gate-hook:", err)
			return 2
		}
		return cfg.preReceive(ctx, dir, stdin, stderr)
	default:
		fmt.Fprintf(stderr, "git-gate-hook: unknown hook %q\n", args[0])
		return 2
	}
}

// accessHook is git daemon's --access-hook: args are service, path,
// hostname, canonical hostname, ip, port. Only declared mirrors pass; an
// upload-pack first refreshes the mirror from upstream. git daemon shows
// the first line of stdout to the client when access is refused.
func (c *Config) accessHook(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stdout, "bot-bottle git-gate: malformed access check")
		return 1
	}
	service, path := args[0], args[1]
	repo, ok := c.repoByMirror(path)
	if !ok {
		fmt.Fprintln(stdout, "bot-bottle git-gate: this repository is not declared for the bottle; add it to bottles.<bottle>.git in the manifest")
		return 1
	}
	switch service {
	case "upload-pack":
		if err := c.refresh(ctx, repo); err != nil {
			// Serve the mirror as it is: the agent can still work from
			// the last known state, and the failure is in the gate's log.
			fmt.Fprintf(stderr, "bot-bottle git-gate: refreshing %s from upstream failed, serving the mirror as is: %v\n", repo.Name, err)
		}
		return 0
	case "receive-pack":
		return 0
	default:
		fmt.Fprintf(stdout, "bot-bottle git-gate: service %q is not offered\n", service)
		return 1
	}
}

// preReceive relays the push to the upstream before the mirror accepts
// it. The mirror takes the update only if the upstream did.
func (c *Config) preReceive(ctx context.Context, dir string, stdin io.Reader, stderr io.Writer) int {
	say := func(format string, a ...any) { fmt.Fprintf(stderr, "bot-bottle git-gate: "+format+"\n", a...) }
	repo, ok := c.repoByMirror(dir)
	if !ok {
		say("this repository is not declared for the bottle")
		return 1
	}
	updates, err := ParseHookInput(stdin)
	if err != nil {
		say("refusing the push: %v", err)
		return 1
	}
	if len(updates) == 0 {
		return 0
	}
	def := c.defaultBranch(ctx, repo)
	env := c.gitEnv(repo)
	var refspecs, leases []string
	for _, u := range updates {
		del, create := isZero(u.New), isZero(u.Old)
		force := false
		switch {
		case del:
			if u.Ref == def && !repo.AllowForce {
				say("refusing to delete %s, the upstream's default branch (set AllowForce on the repository in the manifest to permit it)", u.Ref)
				return 1
			}
		case create:
		case strings.HasPrefix(u.Ref, "refs/tags/"):
			if !repo.AllowForce {
				say("refusing to move tag %s (set AllowForce to permit it)", u.Ref)
				return 1
			}
			force = true
		default:
			ff, err := c.isAncestor(ctx, dir, env, u.Old, u.New)
			if err != nil {
				say("cannot check whether %s is a fast-forward: %v", u.Ref, err)
				return 1
			}
			if !ff {
				if !repo.AllowForce {
					say("refusing a non-fast-forward (force) push to %s; pull and merge or rebase first", u.Ref)
					return 1
				}
				force = true
			}
		}
		switch {
		case del:
			refspecs = append(refspecs, ":"+u.Ref)
		case force:
			refspecs = append(refspecs, "+"+u.New+":"+u.Ref)
			// Only overwrite what the mirror saw; anything newer upstream
			// makes the push fail instead of being lost.
			leases = append(leases, "--force-with-lease="+u.Ref+":"+u.Old)
		default:
			refspecs = append(refspecs, u.New+":"+u.Ref)
		}
	}
	args := append([]string{"push", "--porcelain", "--quiet"}, leases...)
	args = append(args, "--", repo.Upstream)
	args = append(args, refspecs...)
	// The push reads the pushed objects from the quarantine through
	// GIT_OBJECT_DIRECTORY; GIT_QUARANTINE_PATH itself must not reach a
	// local upstream's receive-pack, which would then refuse to update refs.
	res, err := runGit(ctx, c.git(), dir, withoutEnv(env, "GIT_QUARANTINE_PATH"), pushTimeout, args...)
	if err != nil {
		say("the upstream refused the push; nothing was changed here:")
		relay(stderr, res.stderr)
		relay(stderr, res.stdout)
		var ge *GitError
		if errors.As(err, &ge) && ge.Stderr == "" && res.stdout == "" {
			say("%v", ge.Err)
		}
		return 1
	}
	say("pushed to upstream %s", repo.Name)
	return 0
}

func relay(w io.Writer, s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.TrimSpace(line) != "" {
			fmt.Fprintln(w, "  "+line)
		}
	}
}

func (c *Config) isAncestor(ctx context.Context, dir string, env []string, old, new string) (bool, error) {
	_, err := runGit(ctx, c.git(), dir, env, localTimeout, "merge-base", "--is-ancestor", old, new)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, err
}

func withoutEnv(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
