package smolmachines

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bot-bottle/bot-bottle/backends"
)

// MachineSpec describes a machine to create.
type MachineSpec struct {
	// Name is the machine name, MachineName(slug) for a bottle.
	Name string
	// ImageTar is a `docker save` tar of the agent image (see SaveImage).
	ImageTar string
	// CPUs and MemMiB leave smolvm's defaults when zero.
	CPUs   int
	MemMiB int
	// Env is KEY=VALUE pairs for the machine's workload environment.
	Env []string
	// Labels should carry the slug, agent, role, version and backend
	// labels: ls and gc find machines by them.
	Labels backends.Labels
}

// Create creates (but does not start) a machine running `sleep infinity`
// with TSI networking.
func (c *CLI) Create(ctx context.Context, spec MachineSpec) error {
	if err := checkName(spec.Name); err != nil {
		return err
	}
	if spec.ImageTar == "" {
		return errors.New("smolvm machine create: no image tar")
	}
	// smolvm reads a bare word as a registry image to pull, so a tar must
	// be named by a path that cannot be mistaken for one.
	tar, err := filepath.Abs(spec.ImageTar)
	if err != nil {
		return fmt.Errorf("smolvm machine create %s: image tar: %w", spec.Name, err)
	}
	st, err := os.Stat(tar)
	if err != nil {
		return fmt.Errorf("smolvm machine create %s: image tar: %w", spec.Name, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("smolvm machine create %s: image tar %s is not a regular file", spec.Name, tar)
	}
	for _, kv := range spec.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("smolvm machine create %s: env entry %q is not KEY=VALUE", spec.Name, kv)
		}
	}
	for k := range spec.Labels {
		if k == "" || strings.Contains(k, "=") {
			return fmt.Errorf("smolvm machine create %s: bad label key %q", spec.Name, k)
		}
	}
	spec.ImageTar = tar
	_, err = c.runCLI(ctx, createArgs(spec))
	return err
}

// Start boots a machine and waits for its guest agent. Starting a running
// machine succeeds.
func (c *CLI) Start(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := c.runCLI(ctx, startArgs(name))
	return err
}

// Stop stops a machine; stopping a stopped machine succeeds.
func (c *CLI) Stop(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := c.runCLI(ctx, stopArgs(name))
	return err
}

// Delete removes a machine, running or not. A missing machine is not an
// error, so Delete is safe as an undo and in gc.
func (c *CLI) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := c.runCLI(ctx, deleteArgs(name))
	if errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	return err
}

// List returns every machine smolvm knows, bot-bottle's or not.
func (c *CLI) List(ctx context.Context) ([]MachineInfo, error) {
	out, err := c.runCLI(ctx, listArgs())
	if err != nil {
		return nil, err
	}
	return ParseList([]byte(out.stdout))
}

// Status returns one machine. An unknown machine gives an error matching
// backends.ErrNotFound.
func (c *CLI) Status(ctx context.Context, name string) (MachineInfo, error) {
	if err := checkName(name); err != nil {
		return MachineInfo{}, err
	}
	out, err := c.runCLI(ctx, statusArgs(name))
	if err != nil {
		return MachineInfo{}, err
	}
	return ParseStatus([]byte(out.stdout))
}

// Resources returns bot-bottle's machines carrying every selector label,
// as backends.Resource values of Kind "machine". A machine is bot-bottle's
// when it has a slug label or a NamePrefix name; with an empty selector a
// prefixed machine without labels (one whose labels were lost) is included
// too, so gc can reach it.
func (c *CLI) Resources(ctx context.Context, selector backends.Labels) ([]backends.Resource, error) {
	infos, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []backends.Resource
	for _, m := range infos {
		_, labelled := m.Labels[backends.LabelSlug]
		if !labelled && !strings.HasPrefix(m.Name, NamePrefix) {
			continue
		}
		if !hasLabels(m.Labels, selector) {
			continue
		}
		out = append(out, backends.Resource{
			Kind:   "machine",
			ID:     m.Name,
			Name:   m.Name,
			Labels: m.Labels,
			State:  m.State,
		})
	}
	return out, nil
}

// hasLabels reports whether have carries every wanted label; a wanted
// value of "" matches any value of that key.
func hasLabels(have, want backends.Labels) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

// checkName rejects names smolvm would misread: empty, flag-like, or with
// the colon that separates machine and path in cp operands.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("smolvm: empty machine name")
	case strings.HasPrefix(name, "-"), strings.ContainsAny(name, ":/ \t\n"):
		return fmt.Errorf("smolvm: invalid machine name %q", name)
	}
	return nil
}
