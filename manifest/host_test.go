package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeFS is an in-memory host: paths map to whether they are a
// directory; unreadable paths exist but fail Readable.
type fakeFS struct {
	entries    map[string]bool
	unreadable map[string]bool
}

type fakeInfo struct {
	name string
	dir  bool
}

func (i fakeInfo) Name() string { return i.name }
func (i fakeInfo) Size() int64  { return 0 }
func (i fakeInfo) Mode() fs.FileMode {
	return map[bool]fs.FileMode{true: fs.ModeDir | 0o755, false: 0o600}[i.dir]
}
func (i fakeInfo) ModTime() time.Time { return time.Time{} }
func (i fakeInfo) IsDir() bool        { return i.dir }
func (i fakeInfo) Sys() any           { return nil }

func (f fakeFS) env(vars map[string]string) HostEnv {
	return HostEnv{
		Getenv:  envOf(vars),
		HomeDir: func() (string, error) { return "/home/u", nil },
		Stat: func(p string) (fs.FileInfo, error) {
			dir, ok := f.entries[p]
			if !ok {
				return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
			}
			return fakeInfo{name: filepath.Base(p), dir: dir}, nil
		},
		Readable: func(p string) error {
			if f.unreadable[p] {
				return &fs.PathError{Op: "open", Path: p, Err: fs.ErrPermission}
			}
			return nil
		},
	}
}

func hostManifest() *Manifest {
	m := baseManifest()
	dev := m.Bottles["dev"]
	dev.Git = append(dev.Git,
		GitEntry{Name: "abs", Upstream: "/srv/a.git", IdentityFile: "/keys/abs"},
		GitEntry{Name: "nokey", Upstream: "/srv/b.git"},
	)
	dev.Egress.Routes = append(dev.Egress.Routes,
		Route{Host: "b.example.com", TokenEnv: "OTHER_TOKEN"},
		Route{Host: "c.example.com"},
	)
	m.Agents["demo"].Skills = []string{"verify", "init-prd"}
	m.Bottles["other"] = &Bottle{Egress: &Egress{Routes: []Route{{Host: "x.example", TokenEnv: "UNRELATED"}}}}
	return m
}

func TestCheckHostAllPresent(t *testing.T) {
	f := fakeFS{entries: map[string]bool{
		"/home/u/.ssh/id_ed25519":         false,
		"/keys/abs":                       false,
		"/home/u/.claude/skills/verify":   true,
		"/home/u/.claude/skills/init-prd": true,
	}}
	env := f.env(map[string]string{"TOKEN": "s3cr3t", "OTHER_TOKEN": "x"})
	// UNRELATED belongs to another bottle and is not required.
	assert.NoError(t, CheckHost(hostManifest(), "demo", env))
}

func TestCheckHostReportsEverything(t *testing.T) {
	f := fakeFS{
		entries: map[string]bool{
			"/keys/abs":                     false,
			"/home/u/.claude/skills/verify": false, // a file, not a directory
		},
		unreadable: map[string]bool{"/keys/abs": true},
	}
	secret := "hunter2-very-secret"
	env := f.env(map[string]string{"OTHER_TOKEN": "", "UNUSED": secret})
	err := CheckHost(hostManifest(), "demo", env)
	lines := errorLines(t, err)
	assert.Equal(t, []string{
		`agents.demo.skills[0]: skill "verify": /home/u/.claude/skills/verify is not a directory (install the skill at /home/u/.claude/skills/verify, or set BOT_BOTTLE_SKILLS_DIR to the directory holding your skills)`,
		`agents.demo.skills[1]: skill "init-prd" not found: /home/u/.claude/skills/init-prd does not exist (install the skill at /home/u/.claude/skills/init-prd, or set BOT_BOTTLE_SKILLS_DIR to the directory holding your skills)`,
		`bottles.dev.egress.routes[0].token_env: TOKEN is not set or is empty (export TOKEN on the host before launching; its value is injected for api.example.com)`,
		`bottles.dev.egress.routes[1].token_env: OTHER_TOKEN is not set or is empty (export OTHER_TOKEN on the host before launching; its value is injected for b.example.com)`,
		`bottles.dev.git[0].IdentityFile: "~/.ssh/id_ed25519" (/home/u/.ssh/id_ed25519) does not exist (point IdentityFile at an existing private key readable by you)`,
		`bottles.dev.git[1].IdentityFile: "/keys/abs" is not readable: open /keys/abs: permission denied (point IdentityFile at an existing private key readable by you)`,
	}, lines)
	assert.NotContains(t, err.Error(), secret)
}

func TestCheckHostNeverPrintsTokens(t *testing.T) {
	secret := "sk-ant-THIS-MUST-NOT-LEAK"
	f := fakeFS{entries: map[string]bool{}}
	env := f.env(map[string]string{"TOKEN": secret, "OTHER_TOKEN": secret})
	err := CheckHost(hostManifest(), "demo", env)
	require.Error(t, err) // the files are missing
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, err.Error(), "token_env")
}

func TestCheckHostUnknownAgent(t *testing.T) {
	err := CheckHost(baseManifest(), "dmeo", fakeFS{}.env(nil))
	assert.Equal(t, []string{`agents.dmeo: agent "dmeo" is not defined (did you mean "demo"?)`}, errorLines(t, err))
}

func TestCheckHostSkillsDirOverride(t *testing.T) {
	m := baseManifest()
	m.Bottles["dev"].Git[0].IdentityFile = ""
	f := fakeFS{entries: map[string]bool{"/opt/skills/verify": true}}
	env := f.env(map[string]string{"TOKEN": "t", SkillsDirEnv: "/opt/skills"})
	assert.NoError(t, CheckHost(m, "demo", env))
}

func TestSkillDir(t *testing.T) {
	f := fakeFS{}
	assert.Equal(t, "/home/u/.claude/skills/verify", SkillDir("verify", f.env(nil)))
	assert.Equal(t, "/opt/s/verify", SkillDir("verify", f.env(map[string]string{SkillsDirEnv: "/opt/s"})))
	assert.Equal(t, "/home/u/my-skills/verify", SkillDir("verify", f.env(map[string]string{SkillsDirEnv: "~/my-skills"})))

	noHome := f.env(nil)
	noHome.HomeDir = func() (string, error) { return "", errors.New("no home") }
	assert.Equal(t, "~/.claude/skills/verify", SkillDir("verify", noHome))
}

func TestExpandHome(t *testing.T) {
	env := fakeFS{}.env(nil)
	for in, want := range map[string]string{
		"~/.ssh/id":   "/home/u/.ssh/id",
		"~":           "/home/u",
		"/abs/path":   "/abs/path",
		"rel/path":    "rel/path",
		"~other/.ssh": "~other/.ssh",
		"a/~/b":       "a/~/b",
	} {
		got, err := ExpandHome(in, env)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
	env.HomeDir = func() (string, error) { return "", nil }
	_, err := ExpandHome("~/x", env)
	assert.ErrorContains(t, err, "home directory is not set")
}

func TestCheckHostRealFilesystem(t *testing.T) {
	home := t.TempDir()
	key := filepath.Join(home, ".ssh", "id_ed25519")
	touch(t, key)
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".claude", "skills", "verify"), 0o755))

	// Zero HostEnv fields fall back to the real host.
	env := HostEnv{
		HomeDir: func() (string, error) { return home, nil },
		Getenv:  envOf(map[string]string{"TOKEN": "t"}),
	}
	assert.NoError(t, CheckHost(baseManifest(), "demo", env))

	require.NoError(t, os.Remove(key))
	err := CheckHost(baseManifest(), "demo", env)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "bottles.dev.git[0].IdentityFile: "), err.Error())
}

func TestOSHostEnvReadable(t *testing.T) {
	env := OSHostEnv()
	path := filepath.Join(t.TempDir(), "k")
	touch(t, path)
	assert.NoError(t, env.Readable(path))
	assert.ErrorIs(t, env.Readable(path+".missing"), fs.ErrNotExist)
}
