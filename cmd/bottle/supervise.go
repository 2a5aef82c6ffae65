package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/supervise"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

func newSuperviseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "supervise",
		Short: "List, approve and deny the requests agents make through supervise",
		Long: `An agent in a bottle with supervise enabled can ask for more access with
the MCP tools request_egress, request_route and request_change. Each request
waits (up to its timeout) for a human to decide here. Request IDs are unique
across bottles, so approve and deny need only the ID.

Approving request_egress allows the host through the bottle's egress proxy
at once, without a restart. Approving request_route is recorded and takes
effect at the next launch, when the token is read from your environment.`,
		Example: `  bottle supervise ls
  bottle supervise ls demo-abc12 --json
  bottle supervise approve k3x9q2ab
  bottle supervise deny k3x9q2ab --reason "use the internal mirror instead"`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSuperviseLsCmd(), newSuperviseApproveCmd(), newSuperviseDenyCmd())
	return cmd
}

func newSuperviseLsCmd() *cobra.Command {
	var asJSON, pendingOnly bool
	cmd := &cobra.Command{
		Use:   "ls [SLUG]",
		Short: "List requests, of one bottle or of all",
		Example: `  bottle supervise ls
  bottle supervise ls --pending
  bottle supervise ls demo-abc12 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var slugs []string
			if len(args) == 1 {
				if strings.ContainsAny(args[0], `/\`) || args[0] == ".." || args[0] == "." {
					return usageErrorf("%q is not a bottle slug", args[0])
				}
				slugs = []string{args[0]}
			} else {
				dirs, err := os.ReadDir(statedir.Root())
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				for _, d := range dirs {
					if d.IsDir() {
						slugs = append(slugs, d.Name())
					}
				}
			}
			var all []supervise.Entry
			for _, slug := range slugs {
				entries, err := supervise.ListRequests(filepath.Join(statedir.Dir(slug), statedir.SuperviseQueue))
				if err != nil {
					return fmt.Errorf("bottle %s: %w", slug, err)
				}
				for _, e := range entries {
					if !pendingOnly || e.Status == supervise.StatusPending {
						all = append(all, e)
					}
				}
			}
			sort.SliceStable(all, func(i, j int) bool { return all[i].Created.Before(all[j].Created) })
			out := cmd.OutOrStdout()
			if asJSON {
				if all == nil {
					all = []supervise.Entry{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			return printRequests(out, all, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	cmd.Flags().BoolVar(&pendingOnly, "pending", false, "only requests still waiting for a decision")
	return cmd
}

func printRequests(w io.Writer, entries []supervise.Entry, now time.Time) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "no requests")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tBOTTLE\tKIND\tSTATUS\tAGE\tREQUEST\tREASON")
	for _, e := range entries {
		what := e.Host
		switch e.Kind {
		case supervise.KindRoute:
			what = e.Host + " with $" + e.TokenEnv
		case supervise.KindChange:
			what = oneLine(e.Description, 60)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Slug, e.Kind, e.Status,
			now.Sub(e.Created).Round(time.Second), what, oneLine(e.Reason, 60))
	}
	return tw.Flush()
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func newSuperviseApproveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "approve ID",
		Short:   "Approve a request; an egress request takes effect at once",
		Example: `  bottle supervise approve k3x9q2ab`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			stateDir, err := supervise.FindRequest(statedir.Root(), id)
			if err != nil {
				return usageErrorf("%v", err)
			}
			slug := filepath.Base(stateDir)
			var warn error
			d, err := supervise.Approve(stateDir, id, supervise.WithReload(func(r supervise.Request) error {
				return signalEgressReload(cmd.Context(), slug)
			}))
			if err != nil && d.ID == "" {
				return err
			}
			warn = err
			fmt.Fprintf(cmd.OutOrStdout(), "approved %s (bottle %s): %s\n", id, slug, d.Message)
			if warn != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			return nil
		},
	}
}

func newSuperviseDenyCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "deny ID --reason TEXT",
		Short:   "Deny a request, telling the agent why",
		Example: `  bottle supervise deny k3x9q2ab --reason "not needed for this task"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			stateDir, err := supervise.FindRequest(statedir.Root(), id)
			if err != nil {
				return usageErrorf("%v", err)
			}
			d, err := supervise.Deny(stateDir, id, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "denied %s (bottle %s): %s\n", id, filepath.Base(stateDir), d.Message)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, shown to the agent")
	return cmd
}

// signalEgressReload sends SIGHUP to the bottle's egress container so the
// new allow entry applies at once; egress also polls the file, so a
// failure here only delays it by a few seconds.
func signalEgressReload(ctx context.Context, slug string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.ContainerKill(ctx, plan.ResourceName(slug, plan.RoleEgress), client.ContainerKillOptions{Signal: "SIGHUP"})
	return err
}
