package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bot-bottle/bot-bottle/backends"
)

// ReadyWaiter is implemented by engines that can follow a container's log
// until a line matches; sidecars log one `"msg":"ready"` line once every
// listener accepts. Following the log is event-driven: no fixed sleeps,
// and a sidecar that dies ends the stream at once.
type ReadyWaiter interface {
	WaitForLog(ctx context.Context, container string, match func(line []byte) bool) error
}

// readyLine matches the sidecars' readiness log line.
func readyLine(line []byte) bool { return bytes.Contains(line, []byte(`"msg":"ready"`)) }

// sidecarStep is what every sidecar step shares: create its container on
// the outside and bundle networks, start it, wait until it says ready and
// record the address the agent dials. Undo removes the container.
type sidecarStep struct {
	base
	role string
	name string
}

func newSidecarStep(l *Launch, id, role, name string) sidecarStep {
	deps := []string{IDImage, IDNetwork}
	return sidecarStep{base: base{L: l, id: id, deps: deps}, role: role, name: name}
}

func (s *sidecarStep) Timeout() time.Duration { return s.L.Timeouts.withDefaults().Sidecar }

// sidecarSpec is the part of a sidecar's container that differs per kind.
type sidecarSpec struct {
	Cmd    []string
	Mounts []backends.Mount
	// Port is the port the agent dials; published on host loopback on
	// smolmachines.
	Port int
	// ExtraPublish are more ports published on host loopback (e.g.
	// metrics), whatever the backend.
	ExtraPublish []int
	// AsUser runs the sidecar as the invoking user's uid:gid, so files it
	// writes into mounted state dirs stay the user's.
	AsUser bool
	// Image replaces the sidecar image (a user-supplied pipelock).
	Image string
	// Ready replaces waiting for the readiness log line, for sidecars
	// that are not ours.
	Ready func(ctx context.Context) error
	// OutsideIP fixes the sidecar's address on the outside network
	// (where listeners the agent must not reach are bound).
	OutsideIP string
}

// start creates, starts and waits for the sidecar.
func (s *sidecarStep) start(ctx context.Context, spec sidecarSpec) error {
	_, image, _ := s.L.images()
	if spec.Image != "" {
		image = spec.Image
	}
	bundle, outside := s.L.networks()
	cs := backends.ContainerSpec{
		Name:   s.name,
		Image:  image,
		Cmd:    spec.Cmd,
		Labels: s.L.labels(s.role),
		Networks: []backends.Attachment{
			{Network: outside.Name, IP: spec.OutsideIP},
			{Network: bundle.Name, Aliases: []string{SidecarAlias(s.role)}},
		},
		Mounts:          spec.Mounts,
		PublishLoopback: spec.ExtraPublish,
		Init:            true,
		// Sidecars keep the default capabilities they need to read the
		// user's 0600 state files as root; these they never need.
		CapDrop: []string{"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "AUDIT_WRITE"},
	}
	if spec.AsUser {
		cs.User = fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
		cs.CapDrop = []string{"ALL"}
	}
	if s.L.smol() {
		cs.PublishLoopback = append([]int{spec.Port}, cs.PublishLoopback...)
	}
	if _, err := s.L.Engine.CreateContainer(ctx, cs); err != nil {
		return fmt.Errorf("creating container %s: %w", s.name, err)
	}
	if err := s.L.Engine.StartContainer(ctx, s.name); err != nil {
		return fmt.Errorf("starting container %s: %w", s.name, err)
	}
	if spec.Ready != nil {
		if err := spec.Ready(ctx); err != nil {
			return fmt.Errorf("waiting for %s to be ready: %w", s.role, err)
		}
	} else if w, ok := s.L.Engine.(ReadyWaiter); ok {
		if err := w.WaitForLog(ctx, s.name, readyLine); err != nil {
			return fmt.Errorf("waiting for %s to be ready: %w", s.role, err)
		}
	}
	if s.L.smol() {
		hp, err := s.L.Engine.PublishedPort(ctx, s.name, spec.Port)
		if err != nil {
			return fmt.Errorf("finding the host port of %s: %w", s.role, err)
		}
		s.L.SetSidecarAddr(s.role, fmt.Sprintf("127.0.0.1:%d", hp))
	} else {
		s.L.SetSidecarAddr(s.role, fmt.Sprintf("%s:%d", SidecarAlias(s.role), spec.Port))
	}
	return nil
}

// Undo removes the sidecar container; a missing one is fine.
func (s *sidecarStep) Undo(ctx context.Context) error {
	err := s.L.Engine.RemoveContainer(ctx, s.name)
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	return err
}

// stateSubdir returns (creating it 0700) a subdirectory of the bottle's
// state dir.
func (s *sidecarStep) stateSubdir(elem string) (string, error) {
	dir := filepath.Join(s.L.Plan.StateDir, elem)
	return dir, os.MkdirAll(dir, 0o700)
}
