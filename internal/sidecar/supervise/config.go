// Package supervise is the bottle's supervise sidecar: an MCP server
// (streamable HTTP) through which the agent asks the human for more
// access, plus the host-side library the `bottle supervise` commands use to
// list, approve and deny those requests.
//
// The two sides meet in files: the sidecar writes each request as a JSON
// file into the bottle's queue dir and waits (bounded) for a decision file
// beside it; the host writes the decision and, for an approved egress
// request, adds the host to the egress sidecar's dynamic allow file in the
// bottle's current-config dir.
package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultDecisionTimeout bounds how long a tool call waits for the human.
const DefaultDecisionTimeout = 10 * time.Minute

// Files in the current-config dir.
const (
	// DynamicAllowFile is the egress sidecar's dynamic_allow_file.
	DynamicAllowFile = "egress-allow.json"
	// ApprovedRoutesFile records approved request_route calls for the
	// next launch.
	ApprovedRoutesFile = "approved-routes.json"
	// ApprovedChangesFile records approved request_change calls.
	ApprovedChangesFile = "approved-changes.json"
	// EffectiveConfigFile, when present, is what get_config returns
	// (secrets omitted); it overrides Config.EffectiveConfig.
	EffectiveConfigFile = "effective.json"
)

// MCPPath is where the MCP endpoint is served.
const MCPPath = "/mcp"

// Duration is a time.Duration written in JSON as a Go duration string
// ("10m", "1.5s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Config is the supervise sidecar's JSON configuration.
type Config struct {
	// Listen is the MCP server's address on the bundle network.
	Listen string `json:"listen"`
	// Slug identifies the bottle in requests and logs.
	Slug string `json:"slug"`
	// QueueDir holds request and decision files (read-write mount).
	QueueDir string `json:"queue_dir"`
	// CurrentConfigDir holds the bottle's current effective config and
	// the files approvals update (read-only mount is enough).
	CurrentConfigDir string `json:"current_config_dir"`
	// DecisionTimeout bounds each tool call's wait; DefaultDecisionTimeout
	// when zero.
	DecisionTimeout Duration `json:"decision_timeout,omitempty"`
	// EffectiveConfig is the launch-time effective config with secrets
	// omitted, returned by get_config unless EffectiveConfigFile exists.
	EffectiveConfig json.RawMessage `json:"effective_config,omitempty"`
	// MaxPending caps open requests so a looping agent cannot flood the
	// human; 20 when zero.
	MaxPending int `json:"max_pending,omitempty"`
}

// LoadConfig reads and validates a JSON config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("supervise config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("supervise config %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate checks the config without touching the filesystem.
func (c *Config) Validate() error {
	var errs []error
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("listen %q is not host:port", c.Listen))
	}
	if c.Slug == "" || strings.ContainsAny(c.Slug, "/\\ \t\n") {
		errs = append(errs, fmt.Errorf("slug %q is empty or has separators", c.Slug))
	}
	if c.QueueDir == "" {
		errs = append(errs, errors.New("queue_dir is required"))
	}
	if c.CurrentConfigDir == "" {
		errs = append(errs, errors.New("current_config_dir is required"))
	}
	if c.DecisionTimeout < 0 {
		errs = append(errs, errors.New("decision_timeout must not be negative"))
	}
	if c.MaxPending < 0 {
		errs = append(errs, errors.New("max_pending must not be negative"))
	}
	if len(c.EffectiveConfig) > 0 && !json.Valid(c.EffectiveConfig) {
		errs = append(errs, errors.New("effective_config is not valid JSON"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("supervise config: %w", errors.Join(errs...))
	}
	return nil
}

func (c *Config) timeout() time.Duration {
	if c.DecisionTimeout <= 0 {
		return DefaultDecisionTimeout
	}
	return time.Duration(c.DecisionTimeout)
}

func (c *Config) maxPending() int {
	if c.MaxPending <= 0 {
		return 20
	}
	return c.MaxPending
}
