package gitgate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Files the gate keeps inside each mirror.
const (
	refreshLockFile  = "bot-bottle-refresh.lock"
	refreshStampFile = "bot-bottle-refreshed"
)

// fetchRefspecs mirror branches and tags only: review refs such as
// GitHub's refs/pull/* would bloat the mirror.
var fetchRefspecs = []string{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}

// initMirror creates repo's bare mirror if needed, installs the
// pre-receive hook, marks it exported, and fetches from upstream.
func (c *Config) initMirror(ctx context.Context, r *Repo) error {
	dir := c.MirrorPath(r.Name)
	env := c.gitEnv(r)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if _, err := runGit(ctx, c.git(), c.BasePath, env, localTimeout, "init", "--bare", "--quiet", "--", dir); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{
		// The pre-receive hook enforces the push policy; git's own
		// receive checks stay at their defaults.
		{"receive.fsckObjects", "true"},
		{"core.logAllRefUpdates", "false"},
		{"gc.auto", "0"},
	} {
		if _, err := runGit(ctx, c.git(), dir, env, localTimeout, "config", "--", kv[0], kv[1]); err != nil {
			return err
		}
	}
	hook := filepath.Join(dir, "hooks", "pre-receive")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(hook, []byte(preReceiveScript), 0o755); err != nil {
		return err
	}
	// Make sure the mode holds even if the file existed with another.
	if err := os.Chmod(hook, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "git-daemon-export-ok"), nil, 0o644); err != nil {
		return err
	}
	if err := c.refresh(ctx, r); err != nil {
		return err
	}
	return c.syncHead(ctx, r)
}

// syncHead points the mirror's HEAD at the upstream's default branch so
// clones check it out and the push policy knows which branch to protect.
func (c *Config) syncHead(ctx context.Context, r *Repo) error {
	dir := c.MirrorPath(r.Name)
	res, err := runGit(ctx, c.git(), dir, c.gitEnv(r), fetchTimeout, "ls-remote", "--symref", "--", r.Upstream, "HEAD")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(res.stdout, "\n") {
		rest, ok := strings.CutPrefix(line, "ref: ")
		if !ok {
			continue
		}
		ref, _, _ := strings.Cut(rest, "\t")
		if !strings.HasPrefix(ref, "refs/heads/") || !validRefName(ref) {
			continue
		}
		_, err := runGit(ctx, c.git(), dir, c.gitEnv(r), localTimeout, "symbolic-ref", "HEAD", ref)
		return err
	}
	return nil // empty upstream: keep git's default
}

// defaultBranch is the ref the mirror's HEAD names.
func (c *Config) defaultBranch(ctx context.Context, r *Repo) string {
	res, err := runGit(ctx, c.git(), c.MirrorPath(r.Name), c.gitEnv(r), localTimeout, "symbolic-ref", "-q", "HEAD")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(res.stdout)
}

// refresh fetches the upstream into the mirror. Concurrent callers
// coalesce: each waits on the mirror's lock file, and one that acquires it
// after another caller finished a fetch started after it began waiting
// skips its own.
func (c *Config) refresh(ctx context.Context, r *Repo) error {
	dir := c.MirrorPath(r.Name)
	asked := time.Now()
	lf, err := os.OpenFile(filepath.Join(dir, refreshLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := lockWithTimeout(lf, fetchTimeout+10*time.Second); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()
	stamp := filepath.Join(dir, refreshStampFile)
	if st, err := os.Stat(stamp); err == nil && st.ModTime().After(asked) {
		return nil
	}
	started := time.Now()
	args := append([]string{"fetch", "--prune", "--quiet", "--no-write-fetch-head", "--", r.Upstream}, fetchRefspecs...)
	if _, err := runGit(ctx, c.git(), dir, c.gitEnv(r), fetchTimeout, args...); err != nil {
		return err
	}
	// The stamp records when this fetch began: a caller that started
	// waiting before then is served by it.
	if err := os.WriteFile(stamp, nil, 0o600); err != nil {
		return err
	}
	return os.Chtimes(stamp, started, started)
}

// lockWithTimeout takes an exclusive flock, giving up after d.
func lockWithTimeout(f *os.File, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", f.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
