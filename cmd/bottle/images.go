package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/internal/images"
	"github.com/bot-bottle/bot-bottle/steps"
)

// Environment that selects how the agent image is built.
const (
	envAgentFlavour = "BOT_BOTTLE_AGENT_FLAVOUR" // stub (default) or npm
	envClaudeStub   = "BOT_BOTTLE_CLAUDE_STUB"   // path of the claude stub binary
)

// imageSource builds the images a launch needs, only when missing.
type imageSource struct {
	b       *images.Builder
	flavour string
	bottle  string
}

var _ steps.Images = (*imageSource)(nil)

func newImageSource(eng *docker.Engine) (*imageSource, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locating the bottle binary for the sidecar image: %w", err)
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	flavour := os.Getenv(envAgentFlavour)
	if flavour == "" {
		flavour = images.FlavourStub
	}
	if flavour != images.FlavourStub && flavour != images.FlavourNPM {
		return nil, usageErrorf("$%s=%q: want stub or npm", envAgentFlavour, flavour)
	}
	stub := os.Getenv(envClaudeStub)
	if stub == "" {
		stub = filepath.Join(filepath.Dir(self), "claude-stub")
	}
	return &imageSource{
		b:       &images.Builder{Engine: eng, Log: os.Stderr, ClaudeStub: stub},
		flavour: flavour,
		bottle:  self,
	}, nil
}

func (s *imageSource) AgentImage(ctx context.Context, override string) (string, error) {
	if override != "" {
		ok, err := s.b.Engine.ImageExists(ctx, override)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("image %q (bottles.*.image) is not in the local engine; build or load it first", override)
		}
		return override, nil
	}
	if s.flavour == images.FlavourStub {
		if _, err := os.Stat(s.b.ClaudeStub); err != nil {
			return "", fmt.Errorf("the claude stub is missing at %s (run 'make build', set $%s, or set $%s=npm to install Claude Code from npm)", s.b.ClaudeStub, envClaudeStub, envAgentFlavour)
		}
	}
	return s.b.EnsureAgent(ctx, s.flavour)
}

func (s *imageSource) SidecarImage(ctx context.Context) (string, error) {
	return s.b.EnsureSidecar(ctx, s.bottle)
}

func newImagesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build, list and remove the images bottles run on",
		Long: `Bottles run on three images, tagged by a hash of their inputs so they
are rebuilt only when an input changes:
  bot-bottle-base     a Debian bookworm rootfs made by debootstrap
                      (or $BOT_BOTTLE_BASE_IMAGE)
  bot-bottle-agent    the agent: user node, git, curl, claude
                      ($BOT_BOTTLE_AGENT_FLAVOUR=stub|npm; stub by default)
  bot-bottle-sidecar  the static bottle binary, which runs every sidecar
The Debian mirror is read from apt's sources unless $BOT_BOTTLE_DEBIAN_MIRROR
is set.`,
		Example: `  bottle images build
  BOT_BOTTLE_AGENT_FLAVOUR=npm bottle images build
  bottle images ls
  bottle images rm bot-bottle-agent:latest`,
	}
	build := &cobra.Command{
		Use:     "build",
		Short:   "Build every missing image",
		Example: "  bottle images build",
		Args:    cobra.NoArgs,
		RunE: withEngine(func(ctx context.Context, eng *docker.Engine, cmd *cobra.Command, _ []string) error {
			src, err := newImageSource(eng)
			if err != nil {
				return err
			}
			base, err := src.b.EnsureBase(ctx)
			if err != nil {
				return fmt.Errorf("base image: %w", err)
			}
			agent, err := src.AgentImage(ctx, "")
			if err != nil {
				return fmt.Errorf("agent image: %w", err)
			}
			sidecar, err := src.SidecarImage(ctx)
			if err != nil {
				return fmt.Errorf("sidecar image: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "base     %s\nagent    %s\nsidecar  %s\n", base, agent, sidecar)
			return nil
		}),
	}
	ls := &cobra.Command{
		Use:     "ls",
		Short:   "List the images bottle built",
		Example: "  bottle images ls",
		Args:    cobra.NoArgs,
		RunE: withEngine(func(ctx context.Context, eng *docker.Engine, cmd *cobra.Command, _ []string) error {
			st, err := (&images.Builder{Engine: eng}).Status(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tTAGS\tHASH\tSIZE\tCREATED")
			for _, im := range st {
				kind := im.Kind
				if im.Flavour != "" {
					kind += "/" + im.Flavour
				}
				fmt.Fprintf(tw, "%s\t%s\t%.12s\t%.0fMB\t%s\n", kind, strings.Join(im.Tags, ","), im.Hash, float64(im.Size)/1e6, age(im.Created))
			}
			return tw.Flush()
		}),
	}
	var force bool
	rm := &cobra.Command{
		Use:     "rm IMAGE...",
		Short:   "Remove images bottle built",
		Example: "  bottle images rm bot-bottle-agent:latest",
		Args:    cobra.MinimumNArgs(1),
		RunE: withEngine(func(ctx context.Context, eng *docker.Engine, cmd *cobra.Command, args []string) error {
			b := &images.Builder{Engine: eng}
			var errs []error
			for _, ref := range args {
				if err := b.Remove(ctx, ref, force); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			return errors.Join(errs...)
		}),
	}
	rm.Flags().BoolVar(&force, "force", false, "remove even when containers use it")
	cmd.AddCommand(build, ls, rm)
	return cmd
}

// withEngine runs fn with a connection to the Docker Engine, closed after.
func withEngine(fn func(ctx context.Context, eng *docker.Engine, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		eng, err := docker.New(cmd.Context())
		if err != nil {
			return err
		}
		defer eng.Close()
		return fn(cmd.Context(), eng, cmd, args)
	}
}
