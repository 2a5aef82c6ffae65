package steps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// SubnetAllocator is implemented by engines that pick non-overlapping
// subnets for concurrent launches. The engine is the arbiter: two
// launches racing for one subnet cannot both win.
type SubnetAllocator interface {
	CreateNetworkAuto(ctx context.Context, spec backends.NetworkSpec) (backends.NetworkSpec, error)
}

// Network creates the bottle's two networks: the internal bundle network
// the agent lives on (no route out) and the outside network through which
// sidecars reach upstreams.
type Network struct{ base }

// NewNetwork depends on nothing.
func NewNetwork(l *Launch) *Network { return &Network{base{L: l, id: IDNetwork}} }

func (s *Network) Timeout() time.Duration { return s.L.Timeouts.withDefaults().Network }

func (s *Network) Run(ctx context.Context) error {
	p := s.L.Plan
	bundle, err := s.create(ctx, backends.NetworkSpec{Name: p.Names.Bundle, Internal: true, NoHostAddress: true, Labels: s.L.labels(plan.RoleBundle)})
	if err != nil {
		return fmt.Errorf("creating the bundle network: %w", err)
	}
	s.L.mu.Lock()
	s.L.bundle = bundle
	s.L.mu.Unlock()
	outside, err := s.create(ctx, backends.NetworkSpec{Name: p.Names.Outside, Labels: s.L.labels(plan.RoleOutside)})
	if err != nil {
		return fmt.Errorf("creating the outside network: %w", err)
	}
	s.L.mu.Lock()
	s.L.outside = outside
	s.L.mu.Unlock()
	return nil
}

func (s *Network) create(ctx context.Context, spec backends.NetworkSpec) (NetworkInfo, error) {
	if a, ok := s.L.Engine.(SubnetAllocator); ok {
		got, err := a.CreateNetworkAuto(ctx, spec)
		if err != nil {
			return NetworkInfo{}, err
		}
		return NetworkInfo{Name: spec.Name, Subnet: got.Subnet, Gateway: got.Gateway}, nil
	}
	if _, err := s.L.Engine.CreateNetwork(ctx, spec); err != nil {
		return NetworkInfo{}, err
	}
	return NetworkInfo{Name: spec.Name}, nil
}

// Undo removes both networks; each removal tolerates a missing network,
// so a half-run step is undone as well.
func (s *Network) Undo(ctx context.Context) error {
	p := s.L.Plan
	return errors.Join(
		s.L.Engine.RemoveNetwork(ctx, p.Names.Bundle),
		s.L.Engine.RemoveNetwork(ctx, p.Names.Outside),
	)
}
