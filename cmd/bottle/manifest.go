package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bot-bottle/bot-bottle/manifest"
)

func newManifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Check a manifest or print its JSON Schema",
		Example: `  bottle manifest check -f bottle.yaml
  bottle manifest schema > bottle.schema.json`,
	}
	var file string
	check := &cobra.Command{
		Use:   "check [-f FILE]",
		Short: "Validate a manifest, reporting every mistake at once",
		Long: `Validate a manifest and report every mistake with its path and a fix.
Without -f the manifest is looked up as ./bottle.yaml, ./bottle.yml,
./bottle.json, then $XDG_CONFIG_HOME/bot-bottle/manifest.{yaml,json}.
Exit status 0 when valid, 2 otherwise.`,
		Example: `  bottle manifest check
  bottle manifest check -f examples/demo.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, path, err := loadManifest(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d bottles, %d agents)\n", path, len(m.Bottles), len(m.Agents))
			return nil
		},
	}
	check.Flags().StringVarP(&file, "file", "f", "", "manifest file (default: looked up)")
	schema := &cobra.Command{
		Use:     "schema",
		Short:   "Print the manifest's JSON Schema",
		Example: "  bottle manifest schema > bottle.schema.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(manifest.Schema())
			return err
		},
	}
	cmd.AddCommand(check, schema)
	return cmd
}

// loadManifest finds, parses, normalises and validates a manifest. Every
// problem is the caller's to fix, so errors are usage errors (exit 2).
func loadManifest(file string) (*manifest.Manifest, string, error) {
	m, path, err := manifest.Load(file)
	if err != nil {
		return nil, path, &usageError{err}
	}
	return m, path, nil
}
