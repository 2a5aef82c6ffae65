package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/gitgate"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/supervise"
)

// sidecarShutdownGrace bounds a sidecar's graceful stop after SIGTERM;
// docker stop's own grace is longer, so the sidecar exits on its own.
const sidecarShutdownGrace = 8 * time.Second

func newSidecarCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run one of a bottle's sidecar servers (inside its container)",
		Long: `The sidecar commands run inside the bot-bottle-sidecar image; the launch
starts them. Each reads a JSON config written by the launch, logs JSON lines
to stdout, logs exactly one line with "msg":"ready" once it accepts
connections, and stops gracefully on SIGTERM.`,
		Example: `  bottle sidecar egress --config /etc/bot-bottle/egress/egress.json
  bottle sidecar git-gate --config /etc/bot-bottle/git-gate/git-gate.json
  bottle sidecar supervise --config /etc/bot-bottle/supervise/supervise.json
  bottle sidecar healthcheck --url http://127.0.0.1:9090/healthz`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(
		newSidecarEgressCmd(),
		newSidecarGitGateCmd(),
		newSidecarSuperviseCmd(),
		newSidecarHealthcheckCmd(),
		newSidecarGitGateHookCmd(),
		newSidecarGitSSHCmd(),
	)
	return cmd
}

func sidecarLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(os.Stdout, nil)) }

func configFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "config", "", "path of the sidecar's JSON config (required)")
	_ = cmd.MarkFlagRequired("config")
}

func newSidecarEgressCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "egress",
		Short: "Run the egress proxy: allowlist, token injection, exfiltration guard",
		Long: `Run the egress forward proxy. SIGHUP (and any change to the config's
dynamic_allow_file) reloads the allowlist and secrets without dropping
connections.`,
		Example: `  bottle sidecar egress --config /etc/bot-bottle/egress/egress.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := egress.LoadConfig(path)
			if err != nil {
				return &usageError{err}
			}
			log := sidecarLogger()
			srv, err := egress.New(cfg, egress.Options{Logger: log})
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := srv.Start(); err != nil {
				return err
			}
			ctx := cmd.Context()
			for {
				select {
				case <-hup:
					_ = srv.Reload() // logged by Reload; the old policy stays on error
				case <-ctx.Done():
					return stopSidecar(log, srv.Shutdown)
				}
			}
		},
	}
	configFlag(cmd, &path)
	return cmd
}

func newSidecarGitGateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "git-gate",
		Short: "Run the git gate: mirrors relayed to their upstreams over git://",
		Long: `Fetch a bare mirror of each declared repository, then serve them with
git daemon. Fetches refresh the mirror from its upstream first; pushes are
relayed to the upstream before the mirror accepts them.`,
		Example: `  bottle sidecar git-gate --config /etc/bot-bottle/git-gate/git-gate.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gitgate.LoadConfig(path)
			if err != nil {
				return &usageError{err}
			}
			log := sidecarLogger()
			srv, err := gitgate.New(cfg, gitgate.Options{Logger: log})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := srv.Start(ctx); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return stopSidecar(log, srv.Shutdown)
			case <-srv.Done():
				return fmt.Errorf("git daemon exited: %v", srv.Err())
			}
		},
	}
	configFlag(cmd, &path)
	return cmd
}

func newSidecarSuperviseCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:     "supervise",
		Short:   "Run the supervise MCP server the agent asks for changes through",
		Example: `  bottle sidecar supervise --config /etc/bot-bottle/supervise/supervise.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := supervise.LoadConfig(path)
			if err != nil {
				return &usageError{err}
			}
			log := sidecarLogger()
			srv, err := supervise.New(cfg, supervise.Options{Logger: log, Version: buildVersion()})
			if err != nil {
				return err
			}
			if err := srv.Start(); err != nil {
				return err
			}
			<-cmd.Context().Done()
			return stopSidecar(log, srv.Shutdown)
		},
	}
	configFlag(cmd, &path)
	return cmd
}

// stopSidecar runs a bounded graceful shutdown. It runs after the command
// context is cancelled, so it gets a fresh context of its own.
func stopSidecar(log *slog.Logger, shutdown func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), sidecarShutdownGrace)
	defer cancel()
	err := shutdown(ctx)
	log.Info("stopped")
	return err
}

func newSidecarHealthcheckCmd() *cobra.Command {
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if a sidecar's health URL answers 2xx",
		Example: `  bottle sidecar healthcheck --url http://127.0.0.1:3128/healthz
  bottle sidecar healthcheck --url http://10.213.6.2:9090/healthz --timeout 2s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// No proxy from the environment: the check is about this
			// address itself.
			c := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil}}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, url, nil)
			if err != nil {
				return &usageError{err}
			}
			resp, err := c.Do(req)
			if err != nil {
				return fmt.Errorf("unhealthy: %w", err)
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("unhealthy: %s answered %s", url, resp.Status)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "healthy")
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "health URL, e.g. http://127.0.0.1:3128/healthz (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

// newSidecarGitGateHookCmd is run by git daemon (access hook) and
// receive-pack (pre-receive) through the gate's wrapper scripts; its
// arguments and stdin are git's.
func newSidecarGitGateHookCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "git-gate-hook access|pre-receive [ARGS...]",
		Short:              "Git gate hook (run by git, not by people)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := gitgate.RunHook(args, os.Stdin, os.Stdout, os.Stderr); code != 0 {
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
}

// newSidecarGitSSHCmd is GIT_SSH for the gate's upstream connections: it
// becomes ssh with the repository's identity and the host key policy.
func newSidecarGitSSHCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "git-ssh [SSH ARGS...]",
		Short:              "ssh wrapper for the git gate (run by git, not by people)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			err := gitgate.RunSSH(args)
			if err == nil {
				err = errors.New("git-ssh: ssh did not start")
			}
			return err
		},
	}
}
