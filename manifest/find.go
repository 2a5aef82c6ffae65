package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is wrapped by the error Find returns when no candidate
// exists.
var ErrNotFound = errors.New("no manifest found")

// Find returns the manifest path to use. An explicit path (from -f) is
// returned as given once it is known to exist; otherwise the first
// existing file of Candidates for the working directory and the process
// environment is used.
func Find(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("manifest %s (given with -f): %w", explicit, err)
		}
		return explicit, nil
	}
	cwd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding manifest: %w", err)
	}
	return FindIn(cwd, os.Getenv)
}

// Candidates lists, in lookup order, where a manifest is looked for when
// none is named: ./bottle.yaml, ./bottle.yml, ./bottle.json in cwd, then
// manifest.yaml and manifest.json in $XDG_CONFIG_HOME/bot-bottle.
// XDG_CONFIG_HOME defaults to $HOME/.config and, as the XDG spec says, a
// relative value is ignored. Without HOME the user config locations are
// left out.
func Candidates(cwd string, getenv func(string) string) []string {
	paths := []string{
		filepath.Join(cwd, "bottle.yaml"),
		filepath.Join(cwd, "bottle.yml"),
		filepath.Join(cwd, "bottle.json"),
	}
	config := getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(config) {
		config = ""
		if home := getenv("HOME"); home != "" {
			config = filepath.Join(home, ".config")
		}
	}
	if config != "" {
		dir := filepath.Join(config, "bot-bottle")
		paths = append(paths, filepath.Join(dir, "manifest.yaml"), filepath.Join(dir, "manifest.json"))
	}
	return paths
}

// FindIn is Find without -f, for a given working directory and
// environment. A candidate counts when it is a regular file (or a link
// to one); a candidate that exists but cannot be examined is an error
// rather than skipped, so a permissions problem is not mistaken for
// absence. The not-found error lists every path tried.
func FindIn(cwd string, getenv func(string) string) (string, error) {
	tried := Candidates(cwd, getenv)
	for _, p := range tried {
		info, err := os.Stat(p)
		switch {
		case err == nil && info.Mode().IsRegular():
			return p, nil
		case err == nil:
			return "", fmt.Errorf("manifest %s is not a regular file", p)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("checking for manifest: %w", err)
		}
	}
	return "", fmt.Errorf("%w; tried:\n  %s\npass -f <path> to name one", ErrNotFound, strings.Join(tried, "\n  "))
}
