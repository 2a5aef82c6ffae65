package steps

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/ca"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

// Paths inside sidecar containers.
const (
	sidecarBinary        = "/usr/local/bin/bottle"
	sidecarConfigRoot    = "/etc/bot-bottle"
	sidecarCurrentConfig = "/etc/bot-bottle/current-config"
	// DynamicAllowName is the file of hosts approved live through
	// supervise, in the bottle's current-config dir.
	DynamicAllowName = "egress-allow.json"
)

// EgressSidecar generates the bottle's CA, hands the declared tokens to
// the egress proxy alone (a 0600 secrets file mounted only into it) and
// starts the proxy: the agent's only way out.
type EgressSidecar struct{ sidecarStep }

// NewEgressSidecar needs the sidecar image and the networks.
func NewEgressSidecar(l *Launch) *EgressSidecar {
	return &EgressSidecar{newSidecarStep(l, IDSidecarEgress, plan.RoleEgress, l.Plan.Names.Egress)}
}

func (s *EgressSidecar) Run(ctx context.Context) error {
	p := s.L.Plan
	dir, err := s.stateSubdir(statedir.EgressDir)
	if err != nil {
		return err
	}
	cur, err := s.stateSubdir(statedir.CurrentConfigDir)
	if err != nil {
		return err
	}
	certPath, _, err := ca.Generate(dir, "bot-bottle "+p.Slug)
	if err != nil {
		return fmt.Errorf("generating the bottle CA: %w", err)
	}
	secrets := map[string]string{}
	cfg := egress.Config{
		Listen:           fmt.Sprintf(":%d", plan.EgressPort),
		CACert:           sidecarConfigRoot + "/egress/ca.pem",
		CAKey:            sidecarConfigRoot + "/egress/ca-key.pem",
		Allow:            append([]string{}, p.Allow...),
		SecretsFile:      sidecarConfigRoot + "/egress/secrets.json",
		DynamicAllowFile: sidecarCurrentConfig + "/" + DynamicAllowName,
		Bottle:           p.Bottle,
		Supervise:        p.Supervise,
	}
	for _, r := range p.Routes {
		route := egress.Route{Host: r.Host}
		if r.TokenEnv != "" {
			v, ok := s.L.Secrets[r.TokenEnv]
			if !ok || v == "" {
				return fmt.Errorf("egress route %s: $%s is not set on the host; export it or remove token_env", r.Host, r.TokenEnv)
			}
			secrets[r.TokenEnv] = v
			route.Header, route.Format, route.TokenRef = r.Header, r.Format, r.TokenEnv
		}
		cfg.Routes = append(cfg.Routes, route)
	}
	_, outside := s.L.networks()
	outsideIP := ""
	if ip, ok := lastHost(outside.Subnet); ok {
		// A fixed address on the outside network, where the metrics
		// listener lives, out of the agent's reach. The last host address:
		// the engine hands out addresses from the bottom, so concurrently
		// starting sidecars never take it first.
		outsideIP = ip
		cfg.MetricsListen = fmt.Sprintf("%s:%d", outsideIP, plan.EgressMetricsPort)
	}
	mounts := []backends.Mount{
		{Source: dir, Target: sidecarConfigRoot + "/egress", ReadOnly: true},
		{Source: cur, Target: sidecarCurrentConfig, ReadOnly: true},
	}
	if s.L.UpstreamCA != "" {
		cfg.UpstreamCAFile = sidecarConfigRoot + "/upstream-ca.pem"
		mounts = append(mounts, backends.Mount{Source: s.L.UpstreamCA, Target: cfg.UpstreamCAFile, ReadOnly: true})
	}
	if err := egress.WriteSecrets(filepath.Join(dir, "secrets.json"), secrets); err != nil {
		return fmt.Errorf("writing the egress secrets: %w", err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, "egress.json"), cfg, 0o644); err != nil {
		return fmt.Errorf("writing the egress config: %w", err)
	}
	s.L.SetCACert(plan.RoleEgress, certPath)
	return s.start(ctx, sidecarSpec{
		Cmd:       []string{sidecarBinary, "sidecar", "egress", "--config", sidecarConfigRoot + "/egress/egress.json"},
		Mounts:    mounts,
		Port:      plan.EgressPort,
		OutsideIP: outsideIP,
	})
}

// lastHost returns the highest host address of an IPv4 subnet (the one
// before broadcast).
func lastHost(subnet string) (string, bool) {
	pfx, err := netip.ParsePrefix(subnet)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 30 {
		return "", false
	}
	b := pfx.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - pfx.Bits())) - 1 // broadcast
	v--
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String(), true
}
