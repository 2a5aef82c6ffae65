// Package manifest defines the bottle manifest: bottles (what a sandbox
// holds and may reach) and agents (who runs in one). Manifests are JSON or
// YAML with the same keys; manifests written for the original Python
// bot-bottle load unchanged.
package manifest

// Manifest is the whole document.
type Manifest struct {
	Bottles map[string]*Bottle `json:"bottles"`
	Agents  map[string]*Agent  `json:"agents"`
}

// Bottle is one sandbox definition.
type Bottle struct {
	// Git lists repositories the agent may fetch and push through the gate.
	Git []GitEntry `json:"git,omitempty"`
	// GitUser is the identity the agent commits as.
	GitUser *GitUser `json:"git_user,omitempty"`
	// Supervise registers the supervise MCP server with the agent.
	Supervise bool    `json:"supervise,omitempty"`
	Egress    *Egress `json:"egress,omitempty"`
	// Allow lists extra hosts reachable without token injection
	// ("*.example.com" wildcards allowed).
	Allow []string `json:"allow,omitempty"`
	// Image overrides the agent image.
	Image string `json:"image,omitempty"`
	// Env is non-secret environment for the agent.
	Env map[string]string `json:"env,omitempty"`
	// Firewall is "builtin" (default) or "pipelock".
	Firewall string `json:"firewall,omitempty"`
}

// GitEntry is one repository relayed by the git gate. The three original
// keys are capitalised exactly as the Python tool wrote them.
type GitEntry struct {
	Name         string `json:"Name"`
	Upstream     string `json:"Upstream"`
	IdentityFile string `json:"IdentityFile,omitempty"`
	// AllowForce permits force-pushes and deletions of the upstream's
	// default branch.
	AllowForce bool `json:"AllowForce,omitempty"`
}

// GitUser is the agent's git identity; either field may be empty.
type GitUser struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
}

// Egress configures the egress proxy.
type Egress struct {
	Routes []Route `json:"routes,omitempty"`
}

// Route allowlists a host and, with TokenEnv, injects a token read from
// the host environment at launch.
type Route struct {
	Host     string `json:"host"`
	TokenEnv string `json:"token_env,omitempty"`
	// Header defaults to "Authorization".
	Header string `json:"header,omitempty"`
	// Format defaults to "Bearer {token}".
	Format string `json:"format,omitempty"`
}

// Agent is one agent definition.
type Agent struct {
	Bottle string   `json:"bottle"`
	Prompt string   `json:"prompt"`
	Skills []string `json:"skills,omitempty"`
}

// Defaults applied by Normalize.
const (
	DefaultHeader    = "Authorization"
	DefaultFormat    = "Bearer {token}"
	FirewallBuiltin  = "builtin"
	FirewallPipelock = "pipelock"
)
