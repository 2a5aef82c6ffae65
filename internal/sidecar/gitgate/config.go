// Package gitgate is the bottle's git gate: a git daemon on the bundle
// network serving bare mirrors of the declared repositories. The agent
// clones and pushes over git:// without credentials; the gate holds the
// identity files, refreshes a mirror from its upstream before each fetch
// and relays each push to the upstream before accepting it, so the mirror
// never holds anything the upstream refused.
//
// The daemon's hooks are the bottle binary re-invoked (`bottle sidecar
// git-gate-hook ...`, `bottle sidecar git-ssh`) through constant two-line
// sh wrappers: every value (paths, identity) travels in environment
// variables, never inside a shell string.
package gitgate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultPort is git's.
const DefaultPort = 9418

// Strict host key checking modes for ssh upstreams.
const (
	StrictYes       = "yes"
	StrictAcceptNew = "accept-new"
)

// Config is the git gate's JSON configuration.
type Config struct {
	// Listen is "host:port" or ":port" on the bundle network.
	Listen string `json:"listen"`
	// BasePath holds the mirrors (<name>.git) and the gate's private
	// files (.gate/).
	BasePath string `json:"base_path"`
	Repos    []Repo `json:"repos"`
	// Git and SSH are the binaries to run; "git" and "ssh" from PATH when
	// empty.
	Git string `json:"git,omitempty"`
	SSH string `json:"ssh,omitempty"`
	// SSHKnownHostsFile pins upstream host keys (recommended). With
	// SSHStrictHostKeyChecking "accept-new" an unknown key is recorded on
	// first use instead (tests with a freshly generated sshd key use this);
	// the default is "yes". When empty, <base_path>/.gate/known_hosts is
	// used (so accept-new can record keys there).
	SSHKnownHostsFile        string `json:"ssh_known_hosts_file,omitempty"`
	SSHStrictHostKeyChecking string `json:"ssh_strict_host_key_checking,omitempty"`

	// self and cfgPath are set by the running gate and reach hooks through
	// the environment (EnvSelf, EnvConfig).
	self, cfgPath string
}

// Repo is one relayed repository.
type Repo struct {
	// Name is what the agent clones: git://<gate>/<Name>.git.
	Name string `json:"name"`
	// Upstream is an ssh (ssh://..., user@host:path), https or file URL,
	// or an absolute path.
	Upstream string `json:"upstream"`
	// IdentityFile is the ssh private key's path inside the gate.
	IdentityFile string `json:"identity_file,omitempty"`
	// AllowForce permits non-fast-forward updates and deleting the
	// upstream's default branch.
	AllowForce bool `json:"allow_force,omitempty"`
}

var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// LoadConfig reads and validates a JSON config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("git-gate config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("git-gate config %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate checks the config without touching the filesystem.
func (c *Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("listen %q is not host:port", c.Listen))
	}
	if !filepath.IsAbs(c.BasePath) {
		errs = append(errs, fmt.Errorf("base_path %q must be absolute", c.BasePath))
	}
	switch c.SSHStrictHostKeyChecking {
	case "", StrictYes, StrictAcceptNew:
	default:
		errs = append(errs, fmt.Errorf("ssh_strict_host_key_checking must be %q or %q", StrictYes, StrictAcceptNew))
	}
	for _, p := range []struct{ key, v string }{{"git", c.Git}, {"ssh", c.SSH}, {"ssh_known_hosts_file", c.SSHKnownHostsFile}} {
		if strings.HasPrefix(p.v, "-") {
			errs = append(errs, fmt.Errorf("%s %q must not start with '-'", p.key, p.v))
		}
	}
	if len(c.Repos) == 0 {
		errs = append(errs, errors.New("repos: at least one repository is required"))
	}
	seen := map[string]bool{}
	for i, r := range c.Repos {
		if !repoName.MatchString(r.Name) || strings.HasSuffix(r.Name, ".git") || strings.Contains(r.Name, "..") {
			errs = append(errs, fmt.Errorf("repos[%d].name %q: use letters, digits, '.', '_', '-' without a .git suffix", i, r.Name))
		}
		if seen[strings.ToLower(r.Name)] {
			errs = append(errs, fmt.Errorf("repos[%d].name %q is declared twice", i, r.Name))
		}
		seen[strings.ToLower(r.Name)] = true
		if err := ValidUpstream(r.Upstream); err != nil {
			errs = append(errs, fmt.Errorf("repos[%d].upstream: %w", i, err))
		}
		if r.IdentityFile != "" && !filepath.IsAbs(r.IdentityFile) {
			errs = append(errs, fmt.Errorf("repos[%d].identity_file must be an absolute path", i))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("git-gate config: %w", errors.Join(errs...))
	}
	return nil
}

// scpLike is user@host:path. The host must start with a letter or digit:
// ssh would take "-oProxyCommand" in "user@-oProxyCommand:path" as a
// (strange) host name, and git does not block it in this form.
var scpLike = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9][A-Za-z0-9.-]*:[^-]`)

// ValidUpstream accepts the URL forms git can relay to and rejects
// anything git or ssh could read as an option, or a URL carrying a
// password (it would end up in logs and hook output).
func ValidUpstream(u string) error {
	if u == "" {
		return errors.New("empty upstream")
	}
	if strings.HasPrefix(u, "-") || strings.ContainsAny(u, " \t\r\n\x00") {
		return fmt.Errorf("upstream %q must not start with '-' or contain whitespace", u)
	}
	if filepath.IsAbs(u) {
		return nil
	}
	if scpLike.MatchString(u) {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("upstream %q: %w", u, err)
	}
	switch p.Scheme {
	case "ssh", "git+ssh", "https", "file", "git":
	default:
		return fmt.Errorf("upstream %q: scheme must be ssh, https, git or file", u)
	}
	if _, hasPass := p.User.Password(); hasPass {
		return errors.New("upstream must not embed a password; use an identity file")
	}
	if p.Scheme != "file" && (p.Host == "" || strings.HasPrefix(p.Host, "-")) {
		return fmt.Errorf("upstream %q has no usable host", u)
	}
	if strings.HasPrefix(p.User.Username(), "-") {
		// ssh gets "user@host" as one argument: it would read an option.
		return fmt.Errorf("upstream %q: the user must not start with '-'", u)
	}
	if p.Scheme == "file" && p.Host != "" && p.Host != "localhost" {
		// git ignores it; a host in a local URL is a mistake or a trick.
		return fmt.Errorf("upstream %q: a file:// URL names no host (write file:///path)", u)
	}
	return nil
}

func (c *Config) git() string {
	if c.Git == "" {
		return "git"
	}
	return c.Git
}

func (c *Config) ssh() string {
	if c.SSH == "" {
		return "ssh"
	}
	return c.SSH
}

// MirrorPath is where repo name's bare mirror lives.
func (c *Config) MirrorPath(name string) string {
	return filepath.Join(c.BasePath, name+".git")
}

func (c *Config) gateDir() string { return filepath.Join(c.BasePath, ".gate") }

// repoByMirror finds the repo whose mirror is dir (symlinks resolved).
func (c *Config) repoByMirror(dir string) (*Repo, bool) {
	want := realPath(dir)
	for i := range c.Repos {
		if realPath(c.MirrorPath(c.Repos[i].Name)) == want {
			return &c.Repos[i], true
		}
	}
	return nil, false
}

func realPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}
