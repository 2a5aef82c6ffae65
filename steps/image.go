package steps

import (
	"context"
	"fmt"
	"time"
)

// Image makes sure the agent and sidecar images exist, building only what
// is missing, and on smolmachines turns the agent image into the tar the
// VM boots from. Images are a cache shared by bottles: nothing to undo.
type Image struct{ base }

// NewImage depends on nothing.
func NewImage(l *Launch) *Image { return &Image{base{L: l, id: IDImage}} }

func (s *Image) Timeout() time.Duration { return s.L.Timeouts.withDefaults().Image }

func (s *Image) Run(ctx context.Context) error {
	agent, err := s.L.Images.AgentImage(ctx, s.L.Plan.AgentImage)
	if err != nil {
		return fmt.Errorf("agent image: %w", err)
	}
	sidecar, err := s.L.Images.SidecarImage(ctx)
	if err != nil {
		return fmt.Errorf("sidecar image: %w", err)
	}
	bootImage := agent
	if s.L.Machines != nil {
		if bootImage, err = s.L.Machines.PrepareImage(ctx, agent); err != nil {
			return fmt.Errorf("preparing the agent image for the VM: %w", err)
		}
	}
	s.L.mu.Lock()
	s.L.agentImage, s.L.sidecarImg, s.L.bootImage = agent, sidecar, bootImage
	s.L.mu.Unlock()
	return nil
}
