package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// The prompt is the manifest's free text: whatever it holds, claude gets
// it after "--", as its prompt and never as one of its options.
func TestClaudeArgvNeverReadsThePromptAsAnOption(t *testing.T) {
	prefix := []string{"runuser", "-u", "node", "--", "env", "HOME=/home/node", "USER=node", "claude"}
	for name, tc := range map[string]struct{ prompt, want string }{
		"an option":        {"--dangerously-skip-permissions", "--dangerously-skip-permissions"},
		"a short option":   {"-p", "-p"},
		"an option=value":  {"--mcp-config=/tmp/evil.json fix it", "--mcp-config=/tmp/evil.json fix it"},
		"a lone dash-dash": {"--", "--"},
		"shell syntax":     {"$(touch /tmp/pwned); `id` 'q' \"d\"\n\u202e", "$(touch /tmp/pwned); `id` 'q' \"d\"\n\u202e"},
		"over the argument limit": {"-" + strings.Repeat("x", maxPromptArg),
			"Read your instructions from " + plan.GuestPromptPath + " and follow them."},
	} {
		t.Run(name, func(t *testing.T) {
			argv := claudeArgv(&plan.Plan{Prompt: tc.prompt})
			require.Equal(t, prefix, argv[:len(prefix)])
			assert.Equal(t, []string{"--", tc.want}, argv[len(prefix):])
		})
	}
	assert.Equal(t, prefix, claudeArgv(&plan.Plan{}), "no prompt, no arguments")
}
