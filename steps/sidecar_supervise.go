package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/supervise"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

// Paths inside the supervise sidecar.
const superviseQueue = "/var/lib/supervise/queue"

// SuperviseSidecar starts the supervise MCP server, backed by the bottle's
// host queue dir, through which the agent asks a human for changes. It
// runs as the invoking user so the queue files stay theirs.
type SuperviseSidecar struct{ sidecarStep }

// NewSuperviseSidecar needs the sidecar image and the networks.
func NewSuperviseSidecar(l *Launch) *SuperviseSidecar {
	return &SuperviseSidecar{newSidecarStep(l, IDSidecarSupervise, plan.RoleSupervise, l.Plan.Names.Supervise)}
}

// SuperviseURL is the URL the agent registers for the supervise server.
func SuperviseURL(addr string) string { return "http://" + addr + supervise.MCPPath }

func (s *SuperviseSidecar) Run(ctx context.Context) error {
	p := s.L.Plan
	dir, err := s.stateSubdir("supervise")
	if err != nil {
		return err
	}
	queue, err := s.stateSubdir(statedir.SuperviseQueue)
	if err != nil {
		return err
	}
	cur, err := s.stateSubdir(statedir.CurrentConfigDir)
	if err != nil {
		return err
	}
	effective, err := json.Marshal(EffectiveConfig(p))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cur, supervise.EffectiveConfigFile), effective, 0o644); err != nil {
		return fmt.Errorf("writing the effective config: %w", err)
	}
	cfg := supervise.Config{
		Listen:           fmt.Sprintf(":%d", plan.SupervisePort),
		Slug:             p.Slug,
		QueueDir:         superviseQueue,
		CurrentConfigDir: sidecarCurrentConfig,
		EffectiveConfig:  effective,
	}
	if err := writeJSONAtomic(filepath.Join(dir, "supervise.json"), cfg, 0o644); err != nil {
		return fmt.Errorf("writing the supervise config: %w", err)
	}
	return s.start(ctx, sidecarSpec{
		Cmd: []string{sidecarBinary, "sidecar", "supervise", "--config", sidecarConfigRoot + "/supervise/supervise.json"},
		Mounts: []backends.Mount{
			{Source: dir, Target: sidecarConfigRoot + "/supervise", ReadOnly: true},
			{Source: queue, Target: superviseQueue},
			{Source: cur, Target: sidecarCurrentConfig, ReadOnly: true},
		},
		Port:   plan.SupervisePort,
		AsUser: true,
	})
}

// EffectiveConfig is what get_config tells the agent about its bottle:
// everything it may know, with token values and key paths left out.
func EffectiveConfig(p *plan.Plan) map[string]any {
	routes := make([]map[string]string, 0, len(p.Routes))
	for _, r := range p.Routes {
		m := map[string]string{"host": r.Host}
		if r.TokenEnv != "" {
			m["injects"] = r.Header
		}
		routes = append(routes, m)
	}
	repos := make([]string, 0, len(p.Git))
	for _, g := range p.Git {
		repos = append(repos, g.Name+" <- "+g.Upstream)
	}
	return map[string]any{
		"slug":     p.Slug,
		"agent":    p.Agent,
		"bottle":   p.Bottle,
		"backend":  p.Backend,
		"firewall": p.Firewall,
		"routes":   routes,
		"allow":    p.Allow,
		"git":      repos,
	}
}
