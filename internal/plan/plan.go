// Package plan turns (manifest, agent, options) into everything a launch
// decides before its first side effect: the slug, resource names, labels,
// guest paths, sidecar settings and state paths. It is a pure function of
// its Input (randomness and the host environment are injected), so plans are
// golden-tested and printed by `bottle plan` without touching Docker.
package plan

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// Backends a bottle can run on.
const (
	BackendDocker       = "docker"
	BackendSmolmachines = "smolmachines"
)

// Roles label every resource with what it is for.
const (
	RoleAgent     = "agent"
	RoleBundle    = "bundle"  // the internal network the agent lives on
	RoleOutside   = "outside" // the network sidecars reach upstreams through
	RoleEgress    = "egress"
	RoleGitGate   = "git-gate"
	RoleSupervise = "supervise"
	RolePipelock  = "pipelock"
	RoleMachine   = "machine"
)

// Guest paths, as the original tool laid them out.
const (
	GuestHome         = "/home/node"
	GuestUser         = "node"
	GuestPromptPath   = "/home/node/.claude-bottle-prompt.txt"
	GuestSkillsDir    = "/home/node/.claude/skills"
	GuestWorkspace    = "/home/node/workspace"
	GuestGitDir       = "/home/node/workspace/.git"
	GuestGitconfig    = "/home/node/.gitconfig"
	GuestCAPath       = "/usr/local/share/ca-certificates/bot-bottle-ca.crt"
	GuestCABundle     = "/etc/ssl/certs/ca-certificates.crt"
	GuestSkillsDirEnv = "CLAUDE_BOTTLE_GUEST_SKILLS_DIR"
)

// Sidecar ports inside the bundle.
const (
	EgressPort        = 3128
	EgressMetricsPort = 9090
	GitGatePort       = 9418
	SupervisePort     = 8080
	PipelockPort      = 8888
	PipelockMetrics   = 9091
)

// Input is everything the planner reads.
type Input struct {
	Manifest *manifest.Manifest
	Agent    string
	Backend  string
	CopyCwd  bool
	UserCwd  string
	// Version is the bottle binary's version, carried in labels.
	Version string
	// StateRoot is where bottle state dirs live (statedir.Root()).
	StateRoot string
	// Rand supplies the slug's randomness; crypto/rand when nil.
	Rand io.Reader
	// Getenv and Home resolve host skill dirs and guest-dir overrides.
	Getenv func(string) string
	Home   string
}

// Skill is one skill copied into the guest.
type Skill struct {
	Name     string `json:"name"`
	HostDir  string `json:"host_dir"`
	GuestDir string `json:"guest_dir"`
}

// GitRepo is one git entry routed through the gate.
type GitRepo struct {
	Name         string `json:"name"`
	Upstream     string `json:"upstream"`
	IdentityFile string `json:"identity_file,omitempty"`
	AllowForce   bool   `json:"allow_force,omitempty"`
}

// Route is one egress route, with the token named but never held.
type Route struct {
	Host     string `json:"host"`
	TokenEnv string `json:"token_env,omitempty"`
	Header   string `json:"header,omitempty"`
	Format   string `json:"format,omitempty"`
}

// Names are the engine-side names of a bottle's resources.
type Names struct {
	Bundle    string `json:"bundle_network"`
	Outside   string `json:"outside_network"`
	Agent     string `json:"agent"`
	Egress    string `json:"egress"`
	GitGate   string `json:"git_gate,omitempty"`
	Supervise string `json:"supervise,omitempty"`
	Pipelock  string `json:"pipelock,omitempty"`
	// Machine is the smolvm machine name (smolmachines only).
	Machine string `json:"machine,omitempty"`
}

// Plan is a launch decided.
type Plan struct {
	Agent    string `json:"agent"`
	Bottle   string `json:"bottle"`
	Backend  string `json:"backend"`
	Slug     string `json:"slug"`
	StateDir string `json:"state_dir"`
	Version  string `json:"version"`
	Names    Names  `json:"names"`
	// Labels are the common labels; Labels(role) adds the role.
	BaseLabels map[string]string `json:"labels"`

	Prompt     string  `json:"-"`
	PromptFile string  `json:"prompt_file"`
	Skills     []Skill `json:"skills,omitempty"`
	// GuestSkillsDir is where skills land (overridable by env).
	GuestSkillsDir string `json:"guest_skills_dir"`
	// CopyCwdGit is the host .git copied into the workspace, if any.
	CopyCwdGit string            `json:"copy_cwd_git,omitempty"`
	Git        []GitRepo         `json:"git,omitempty"`
	GitUser    *manifest.GitUser `json:"git_user,omitempty"`
	Supervise  bool              `json:"supervise"`
	Firewall   string            `json:"firewall"`
	Routes     []Route           `json:"routes,omitempty"`
	Allow      []string          `json:"allow,omitempty"`
	AgentImage string            `json:"agent_image,omitempty"`
	AgentEnv   map[string]string `json:"agent_env,omitempty"`
}

// New plans a launch. It validates nothing the manifest package already
// validated, but refuses inputs it cannot plan (unknown agent or backend).
func New(in Input) (*Plan, error) {
	if in.Manifest == nil {
		return nil, fmt.Errorf("plan: no manifest")
	}
	ag, ok := in.Manifest.Agents[in.Agent]
	if !ok || ag == nil {
		return nil, fmt.Errorf("agent %q is not in the manifest (agents: %s)", in.Agent, strings.Join(sortedKeys(in.Manifest.Agents), ", "))
	}
	b, ok := in.Manifest.Bottles[ag.Bottle]
	if !ok || b == nil {
		return nil, fmt.Errorf("agents.%s.bottle: bottle %q is not in the manifest", in.Agent, ag.Bottle)
	}
	switch in.Backend {
	case BackendDocker, BackendSmolmachines:
	case "":
		in.Backend = BackendDocker
	default:
		return nil, fmt.Errorf("--backend %q: unknown backend (want docker or smolmachines)", in.Backend)
	}
	getenv := in.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	suffix, err := slugSuffix(in.Rand)
	if err != nil {
		return nil, err
	}
	slug := in.Agent + "-" + suffix
	stateDir := filepath.Join(in.StateRoot, slug)
	p := &Plan{
		Agent:      in.Agent,
		Bottle:     ag.Bottle,
		Backend:    in.Backend,
		Slug:       slug,
		StateDir:   stateDir,
		Version:    in.Version,
		Prompt:     ag.Prompt,
		PromptFile: filepath.Join(stateDir, "agent", "prompt.txt"),
		Supervise:  b.Supervise,
		Firewall:   b.Firewall,
		GitUser:    b.GitUser,
		AgentImage: b.Image,
	}
	if p.Firewall == "" {
		p.Firewall = manifest.FirewallBuiltin
	}
	p.Names = Names{
		Bundle:  ResourceName(slug, RoleBundle),
		Outside: ResourceName(slug, RoleOutside),
		Agent:   ResourceName(slug, RoleAgent),
		Egress:  ResourceName(slug, RoleEgress),
	}
	if len(b.Git) > 0 {
		p.Names.GitGate = ResourceName(slug, RoleGitGate)
	}
	if b.Supervise {
		p.Names.Supervise = ResourceName(slug, RoleSupervise)
	}
	if p.Firewall == manifest.FirewallPipelock {
		p.Names.Pipelock = ResourceName(slug, RolePipelock)
	}
	if in.Backend == BackendSmolmachines {
		p.Names.Machine = MachineName(slug)
	}
	p.BaseLabels = map[string]string{
		backends.LabelSlug:    slug,
		backends.LabelAgent:   in.Agent,
		backends.LabelVersion: in.Version,
		backends.LabelBackend: in.Backend,
	}
	p.GuestSkillsDir = GuestSkillsDir
	if d := getenv(GuestSkillsDirEnv); d != "" {
		p.GuestSkillsDir = d
	}
	hostEnv := manifest.HostEnv{Getenv: getenv, HomeDir: func() (string, error) { return in.Home, nil }}
	for _, name := range ag.Skills {
		p.Skills = append(p.Skills, Skill{
			Name:     name,
			HostDir:  manifest.SkillDir(name, hostEnv),
			GuestDir: p.GuestSkillsDir + "/" + name,
		})
	}
	if in.CopyCwd && in.UserCwd != "" {
		p.CopyCwdGit = filepath.Join(in.UserCwd, ".git")
	}
	for _, g := range b.Git {
		p.Git = append(p.Git, GitRepo{Name: g.Name, Upstream: g.Upstream, IdentityFile: expandHome(g.IdentityFile, in.Home), AllowForce: g.AllowForce})
	}
	if b.Egress != nil {
		for _, r := range b.Egress.Routes {
			rt := Route{Host: r.Host, TokenEnv: r.TokenEnv, Header: r.Header, Format: r.Format}
			if rt.TokenEnv != "" {
				if rt.Header == "" {
					rt.Header = manifest.DefaultHeader
				}
				if rt.Format == "" {
					rt.Format = manifest.DefaultFormat
				}
			}
			p.Routes = append(p.Routes, rt)
		}
	}
	p.Allow = append(p.Allow, b.Allow...)
	if len(b.Env) > 0 {
		p.AgentEnv = make(map[string]string, len(b.Env))
		for k, v := range b.Env {
			p.AgentEnv[k] = v
		}
	}
	return p, nil
}

// Labels returns the labels of a resource with the given role.
func (p *Plan) Labels(role string) map[string]string {
	l := make(map[string]string, len(p.BaseLabels)+1)
	for k, v := range p.BaseLabels {
		l[k] = v
	}
	l[backends.LabelRole] = role
	return l
}

// HasRoutes reports whether egress injects or allowlists declared routes;
// then egress is the agent's first hop and its CA is the one installed.
func (p *Plan) HasRoutes() bool { return len(p.Routes) > 0 }

// CASidecar is the step whose CA the agent must trust: egress when the
// bottle has routes or uses the builtin firewall, otherwise pipelock.
func (p *Plan) CASidecar() string {
	if p.Firewall == manifest.FirewallPipelock && !p.HasRoutes() {
		return RolePipelock
	}
	return RoleEgress
}

// ResourceName is bot-bottle-<slug>-<role>.
func ResourceName(slug, role string) string { return backends.NamePrefix + slug + "-" + role }

// MachineName is the smolvm machine of a bottle: bot-bottle-<slug>.
func MachineName(slug string) string { return backends.NamePrefix + slug }

var slugEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// slugSuffix draws 5 lowercase base32 characters (25 bits).
func slugSuffix(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("plan: reading randomness for the slug: %w", err)
	}
	return slugEncoding.EncodeToString(b[:])[:5], nil
}

func expandHome(p, home string) string {
	if home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
		return filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
