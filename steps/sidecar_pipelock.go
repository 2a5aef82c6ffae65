package steps

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/ca"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/pipelock"
)

// Paths inside the pipelock container.
const (
	pipelockConfigDir = "/etc/bot-bottle/pipelock"
	pipelockBinary    = "/usr/local/bin/pipelock"
)

// PipelockSidecar runs pipelock, the optional allowlisting firewall, with
// a config generated from the manifest and a CA of its own. pipelock is
// not ours to ship: its image or binary comes from the user (located
// before the launch creates anything).
type PipelockSidecar struct{ sidecarStep }

// NewPipelockSidecar needs the networks (and the sidecar image when
// pipelock comes as a binary).
func NewPipelockSidecar(l *Launch) *PipelockSidecar {
	return &PipelockSidecar{newSidecarStep(l, IDSidecarPipelock, plan.RolePipelock, l.Plan.Names.Pipelock)}
}

func (s *PipelockSidecar) Run(ctx context.Context) error {
	p := s.L.Plan
	loc := s.L.Pipelock
	if loc.Image == "" && loc.Binary == "" {
		return fmt.Errorf("pipelock was not located before the launch (set %s or put pipelock on PATH)", pipelock.EnvImage)
	}
	dir, err := s.stateSubdir("pipelock")
	if err != nil {
		return err
	}
	certPath, _, err := ca.Generate(dir, "bot-bottle pipelock "+p.Slug)
	if err != nil {
		return fmt.Errorf("generating the pipelock CA: %w", err)
	}
	_, outside := s.L.networks()
	outsideIP, ok := nthLastHost(outside.Subnet, 2)
	if !ok {
		return fmt.Errorf("the outside network has no known subnet")
	}
	allow := append([]string{}, p.Allow...)
	for _, r := range p.Routes {
		allow = append(allow, r.Host)
	}
	yaml, err := pipelock.GenerateConfig(pipelock.Input{
		Listen:        fmt.Sprintf("0.0.0.0:%d", plan.PipelockPort),
		MetricsListen: fmt.Sprintf("%s:%d", outsideIP, plan.PipelockMetrics),
		Allow:         allow,
		CACert:        pipelockConfigDir + "/ca.pem",
		CAKey:         pipelockConfigDir + "/ca-key.pem",
	})
	if err != nil {
		return fmt.Errorf("generating the pipelock config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pipelock.yaml"), yaml, 0o644); err != nil {
		return err
	}
	s.L.SetCACert(plan.RolePipelock, certPath)
	spec := sidecarSpec{
		Cmd:       []string{"pipelock", "run", "-c", pipelockConfigDir + "/pipelock.yaml", "-l", fmt.Sprintf("0.0.0.0:%d", plan.PipelockPort)},
		Mounts:    []backends.Mount{{Source: dir, Target: pipelockConfigDir, ReadOnly: true}},
		Port:      plan.PipelockPort,
		OutsideIP: outsideIP,
		Image:     loc.Image,
		// pipelock does not log our readiness line: ask its health
		// endpoint on the outside network, which the host reaches.
		Ready: func(ctx context.Context) error {
			return waitHealthy(ctx, fmt.Sprintf("http://%s/health", net.JoinHostPort(outsideIP, fmt.Sprint(plan.PipelockPort))))
		},
	}
	if loc.Binary != "" {
		spec.Cmd[0] = pipelockBinary
		spec.Mounts = append(spec.Mounts, backends.Mount{Source: loc.Binary, Target: pipelockBinary, ReadOnly: true})
	}
	return s.start(ctx, spec)
}

// waitHealthy polls url until it answers 200, with backoff, until ctx ends
// (the step's timeout bounds it).
func waitHealthy(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	delay := 20 * time.Millisecond
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered 200: %w", url, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// nthLastHost returns the n-th highest host address of an IPv4 subnet
// (n=1 is the one before broadcast).
func nthLastHost(subnet string, n int) (string, bool) {
	last, ok := lastHost(subnet)
	if !ok {
		return "", false
	}
	a := netip.MustParseAddr(last)
	for i := 1; i < n; i++ {
		a = a.Prev()
	}
	pfx, _ := netip.ParsePrefix(subnet)
	if !pfx.Contains(a) || a == pfx.Masked().Addr() {
		return "", false
	}
	return a.String(), true
}
