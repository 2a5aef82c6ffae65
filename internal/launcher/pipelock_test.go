package launcher

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/pipelock"
	"github.com/bot-bottle/bot-bottle/manifest"
)

// Without a pipelock image or binary, a pipelock bottle fails before the
// launch creates anything, saying how to supply one.
func TestPipelockUnavailableFailsBeforeCreatingAnything(t *testing.T) {
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {Firewall: manifest.FirewallPipelock, Allow: []string{"example.com"}}},
		Agents:  map[string]*manifest.Agent{"demo": {Bottle: "dev"}},
	}
	for name, e := range map[string]env{
		"nothing":       {},
		"missing image": {pipelock.EnvImage: "pipelock-not-loaded:v0"},
	} {
		t.Run(name, func(t *testing.T) {
			o, _ := dockerOptions(t, m, "demo", e)
			o.LookPath = func(string) (string, error) { return "", errors.New("not on PATH") }
			_, res, err := Run(context.Background(), o)
			require.Error(t, err)
			var pe *PreflightError
			require.ErrorAs(t, err, &pe)
			assert.ErrorIs(t, err, pipelock.ErrNotAvailable)
			assert.Contains(t, err.Error(), pipelock.EnvImage)
			assert.Contains(t, err.Error(), "bottles.dev.firewall")
			assert.Nil(t, res, "no step ran")
			entries, _ := os.ReadDir(o.StateRoot)
			assert.Empty(t, entries, "no state dir was created")
		})
	}
}
