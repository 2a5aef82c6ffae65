package launcher

import (
	"context"
	"errors"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/smolmachines"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/steps"
)

// SmolMachines runs the agent in a smolvm microVM; sidecars stay in
// Docker.
type SmolMachines struct {
	CLI *smolmachines.CLI
	// Images exports the agent image to the tar smolvm boots from.
	Images smolmachines.ImageAPI
	// CacheDir holds the exported image tars; empty means the default.
	CacheDir string
}

var _ Machines = (*SmolMachines)(nil)

// PrepareImage exports the agent image as a `docker save` tar, cached by
// image ID.
func (s *SmolMachines) PrepareImage(ctx context.Context, imageRef string) (string, error) {
	return smolmachines.SaveImage(ctx, s.Images, imageRef, s.CacheDir)
}

// Boot creates and starts the machine. A machine that was created but did
// not start is deleted before the error returns, so the step's undo has
// nothing half-made to find.
//
// Once begun, create and start run to their end even when ctx is
// cancelled (its deadline still bounds them): a smolvm killed half-way
// leaves what it was making (a VM, a record) to appear after the undo
// looked, so the undo would miss it. A cancellation is noticed between
// the two and by the steps after.
func (s *SmolMachines) Boot(ctx context.Context, spec steps.MachineSpec) (backends.Guest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	settled, cancel := settle(ctx)
	defer cancel()
	err := s.CLI.Create(settled, smolmachines.MachineSpec{Name: spec.Name, ImageTar: spec.Image, Env: spec.Env, Labels: spec.Labels})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(err, s.CLI.Delete(settled, spec.Name))
	}
	if err := s.CLI.Start(settled, spec.Name); err != nil {
		return nil, errors.Join(err, s.CLI.Delete(settled, spec.Name))
	}
	return smolmachines.NewMachine(s.CLI, spec.Name), nil
}

// settle is ctx without its cancellation, keeping its deadline.
func settle(ctx context.Context) (context.Context, context.CancelFunc) {
	detached := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(detached, dl)
	}
	return context.WithCancel(detached)
}

// Delete removes a machine; missing is fine.
func (s *SmolMachines) Delete(ctx context.Context, name string) error {
	return s.CLI.Delete(ctx, name)
}

// Stop stops a machine, keeping it.
func (s *SmolMachines) Stop(ctx context.Context, name string) error { return s.CLI.Stop(ctx, name) }

// GuestRetry retries exactly the warm-up race.
func (s *SmolMachines) GuestRetry() *dag.RetryPolicy { return smolmachines.WarmupRetryPolicy() }

// RemoveSlug deletes the machine of a slug.
func (s *SmolMachines) RemoveSlug(ctx context.Context, slug string) error {
	res, err := s.CLI.Resources(ctx, backends.Labels{backends.LabelSlug: slug})
	if err != nil {
		return err
	}
	names := map[string]bool{smolmachines.MachineName(slug): true}
	for _, r := range res {
		names[r.Name] = true
	}
	var errs []error
	for n := range names {
		if err := s.CLI.Delete(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List returns every machine a bottle created.
func (s *SmolMachines) List(ctx context.Context) ([]backends.Resource, error) {
	// An empty selector includes prefixed machines whose labels were lost,
	// so gc can reach them; List derives their slug from the name.
	return s.CLI.Resources(ctx, nil)
}

// Guest returns the guest of a machine.
func (s *SmolMachines) Guest(name string) backends.Guest { return smolmachines.NewMachine(s.CLI, name) }
