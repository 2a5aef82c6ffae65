package manifest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClosest(t *testing.T) {
	keys := []string{"git", "git_user", "supervise", "egress", "allow", "image", "env", "firewall"}
	tests := map[string]string{
		"gti":        "git",
		"gitt":       "git",
		"git-user":   "git_user",
		"GitUser":    "git_user",
		"supervisor": "supervise",
		"superivse":  "supervise",
		"egres":      "egress",
		"alow":       "allow",
		"fire_wall":  "firewall",
		"xyz":        "",
		"routes":     "",
		"":           "",
		"e":          "",
	}
	for word, want := range tests {
		assert.Equal(t, want, closest(word, keys), "closest(%q)", word)
	}
	assert.Equal(t, "", closest("x", nil))
	assert.Equal(t, "IdentityFile", closest("identity_file", []string{"Name", "Upstream", "IdentityFile", "AllowForce"}))
}

func TestOSADistance(t *testing.T) {
	assert.Equal(t, 0, osaDistance("abc", "abc"))
	assert.Equal(t, 1, osaDistance("gti", "git"))
	assert.Equal(t, 1, osaDistance("git", "gt"))
	assert.Equal(t, 3, osaDistance("", "abc"))
	assert.Equal(t, 3, osaDistance("kitten", "sitting"))
	assert.Equal(t, 1, osaDistance("é", "e"))
	// Huge inputs are not compared, keeping suggestion linear.
	assert.Greater(t, osaDistance(strings.Repeat("a", 100000), "a"), 64)
}
