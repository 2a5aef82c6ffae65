package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SkillsDirEnv overrides the host directory skills are read from.
const SkillsDirEnv = "BOT_BOTTLE_SKILLS_DIR"

// HostEnv is the slice of the host that CheckHost and SkillDir look at,
// injectable so tests need no real home directory or secrets. A nil
// field falls back to the real host (see OSHostEnv).
type HostEnv struct {
	// Getenv reads a host environment variable.
	Getenv func(key string) string
	// HomeDir returns the user's home directory.
	HomeDir func() (string, error)
	// Stat follows symlinks, like os.Stat.
	Stat func(path string) (fs.FileInfo, error)
	// Readable returns nil when the current user can read the file at
	// path. Permission bits alone cannot tell (root, ACLs), so the real
	// one opens and closes the file.
	Readable func(path string) error
}

// OSHostEnv is the real host.
func OSHostEnv() HostEnv {
	return HostEnv{
		Getenv:  os.Getenv,
		HomeDir: os.UserHomeDir,
		Stat:    os.Stat,
		Readable: func(path string) error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		},
	}
}

func (env HostEnv) withDefaults() HostEnv {
	def := OSHostEnv()
	if env.Getenv == nil {
		env.Getenv = def.Getenv
	}
	if env.HomeDir == nil {
		env.HomeDir = def.HomeDir
	}
	if env.Stat == nil {
		env.Stat = def.Stat
	}
	if env.Readable == nil {
		env.Readable = def.Readable
	}
	return env
}

// ExpandHome replaces a leading "~/" (or a lone "~") with the home
// directory. Other paths, including "~user/...", are returned unchanged.
func ExpandHome(path string, env HostEnv) (string, error) {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path, nil
	}
	home, err := env.withDefaults().HomeDir()
	if err == nil && home == "" {
		err = errors.New("home directory is not set")
	}
	if err != nil {
		return "", fmt.Errorf("expanding %s: %w", path, err)
	}
	return filepath.Join(home, strings.TrimPrefix(path, "~")), nil
}

// SkillDir is the host directory holding the named skill:
// $BOT_BOTTLE_SKILLS_DIR/<name> when that is set (a leading "~/" is
// expanded), else ~/.claude/skills/<name>. Without a home directory the
// default is returned unexpanded ("~/.claude/skills/<name>"), which
// CheckHost then reports as missing.
func SkillDir(name string, env HostEnv) string {
	env = env.withDefaults()
	base := env.Getenv(SkillsDirEnv)
	if base == "" {
		base = "~/.claude/skills"
	}
	if expanded, err := ExpandHome(base, env); err == nil {
		base = expanded
	}
	return filepath.Join(base, name)
}

// CheckHost checks what the named agent needs from the host before a
// launch: each IdentityFile of its bottle's git entries exists and is
// readable, each of its skills is a directory under SkillDir, and each
// token_env of its bottle's routes is set and non-empty. Problems are
// reported as FieldErrors at the manifest path that asked for the thing.
// A token's value is never read beyond checking that it is non-empty,
// and never appears in an error.
//
// m should have passed Validate; CheckHost does not repeat its checks.
func CheckHost(m *Manifest, agent string, env HostEnv) error {
	env = env.withDefaults()
	var c collector
	a, b, err := m.Resolve(agent)
	if err != nil {
		c.add(joinKey("agents", agent), err.Error(), "")
		return c.errs.orNil()
	}
	bpath := joinKey("bottles", a.Bottle)

	for i, g := range b.Git {
		if g.IdentityFile == "" {
			continue
		}
		p := joinIndex(bpath+".git", i) + ".IdentityFile"
		checkReadableFile(&c, p, g.IdentityFile, env)
	}

	for i, s := range a.Skills {
		p := joinIndex(joinKey("agents", agent)+".skills", i)
		dir := SkillDir(s, env)
		fix := fmt.Sprintf("install the skill at %s, or set %s to the directory holding your skills", dir, SkillsDirEnv)
		info, err := env.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			c.addf(p, fix, "skill %s not found: %s does not exist", quoteShort(s), dir)
		case err != nil:
			c.addf(p, fix, "skill %s: %v", quoteShort(s), err)
		case !info.IsDir():
			c.addf(p, fix, "skill %s: %s is not a directory", quoteShort(s), dir)
		}
	}

	for i, r := range b.Routes() {
		if r.TokenEnv == "" {
			continue
		}
		if env.Getenv(r.TokenEnv) == "" {
			c.addf(joinIndex(bpath+".egress.routes", i)+".token_env",
				fmt.Sprintf("export %s on the host before launching; its value is injected for %s", r.TokenEnv, r.Host),
				"%s is not set or is empty", r.TokenEnv)
		}
	}
	return c.errs.orNil()
}

func checkReadableFile(c *collector, path, file string, env HostEnv) {
	fix := "point IdentityFile at an existing private key readable by you"
	full, err := ExpandHome(file, env)
	if err != nil {
		c.add(path, err.Error(), fix)
		return
	}
	shown := quoteShort(file)
	if full != file {
		shown += " (" + full + ")"
	}
	info, err := env.Stat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.addf(path, fix, "%s does not exist", shown)
		return
	case err != nil:
		c.addf(path, fix, "%s: %v", shown, err)
		return
	case info.IsDir():
		c.addf(path, fix, "%s is a directory", shown)
		return
	}
	if err := env.Readable(full); err != nil {
		c.addf(path, fix, "%s is not readable: %v", shown, err)
	}
}
