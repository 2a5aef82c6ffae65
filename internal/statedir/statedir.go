// Package statedir locates the host state of bottles:
// $XDG_STATE_HOME/bot-bottle/<slug> (default ~/.local/state/bot-bottle).
// Each bottle's directory holds what its sidecars mount (CA, configs,
// secrets readable only by the owner, the supervise queue) and is removed
// with the bottle.
package statedir

import (
	"os"
	"path/filepath"
)

// Root returns the directory holding every bottle's state.
func Root() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "bot-bottle")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = os.TempDir()
	}
	return filepath.Join(home, ".local", "state", "bot-bottle")
}

// Dir returns the state directory of one bottle.
func Dir(slug string) string { return filepath.Join(Root(), slug) }

// Subdirectories of a bottle's state directory.
const (
	EgressDir        = "egress"          // ca.pem, ca-key.pem (0600), egress.json, secrets.json (0600)
	GitGateDir       = "git-gate"        // git-gate.json, identity files copied 0600
	SuperviseQueue   = "supervise/queue" // one JSON file per request, plus decisions
	CurrentConfigDir = "current-config"  // the bottle's effective config, updated on approval
	AgentDir         = "agent"           // prompt.txt and other files staged for the guest
)
