package supervise

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
)

// Request kinds, one per tool.
const (
	KindEgress = "egress"
	KindRoute  = "route"
	KindChange = "change"
)

// Limits on agent-supplied text; a human reads it in a terminal.
const (
	maxReason      = 1000
	maxDescription = 4000
)

// EgressArgs are request_egress's arguments.
type EgressArgs struct {
	Host   string `json:"host" jsonschema:"the DNS name to allow, e.g. registry.npmjs.org; a leading *. asks for every subdomain"`
	Reason string `json:"reason" jsonschema:"why the agent needs it, shown to the human"`
}

// RouteArgs are request_route's arguments.
type RouteArgs struct {
	Host     string `json:"host" jsonschema:"the API host that needs a token, e.g. api.github.com"`
	TokenEnv string `json:"token_env" jsonschema:"name of the environment variable on the human's machine that holds the token"`
	Reason   string `json:"reason" jsonschema:"why the agent needs it, shown to the human"`
}

// ChangeArgs are request_change's arguments.
type ChangeArgs struct {
	Description string `json:"description" jsonschema:"the change to the bottle the agent asks the human to make"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// normalizeDNSHost validates a host the agent asks for: a DNS name
// (optionally "*."-prefixed), not an IP literal, in normalized form.
func normalizeDNSHost(h string) (string, error) {
	n := egress.NormalizeHost(h)
	if n == "" {
		return "", errors.New("host is required")
	}
	if net.ParseIP(strings.TrimPrefix(n, "*.")) != nil {
		return "", fmt.Errorf("host must be a DNS name, not an IP address")
	}
	if err := egress.ValidHostPattern(n); err != nil {
		return "", err
	}
	if !strings.Contains(strings.TrimPrefix(n, "*."), ".") {
		return "", fmt.Errorf("host %q is not a fully qualified name", n)
	}
	return n, nil
}

func validText(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%s is required", field)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s is not valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > max {
		return "", fmt.Errorf("%s is longer than %d characters", field, max)
	}
	for _, r := range s {
		// Terminal escapes in a request could rewrite what the human sees.
		if unicode.IsControl(r) && r != '\n' && r != '\t' || unicode.In(r, unicode.Bidi_Control) {
			return "", fmt.Errorf("%s contains control characters", field)
		}
	}
	return s, nil
}

// Validate normalizes and checks the arguments.
func (a *EgressArgs) Validate() error {
	h, err := normalizeDNSHost(a.Host)
	if err != nil {
		return err
	}
	r, err := validText("reason", a.Reason, maxReason)
	if err != nil {
		return err
	}
	a.Host, a.Reason = h, r
	return nil
}

// Validate normalizes and checks the arguments.
func (a *RouteArgs) Validate() error {
	h, err := normalizeDNSHost(a.Host)
	if err != nil {
		return err
	}
	if strings.HasPrefix(h, "*.") {
		return errors.New("a token route needs an exact host, not a wildcard")
	}
	if !envName.MatchString(a.TokenEnv) {
		return fmt.Errorf("token_env must be an environment variable name (letters, digits, _)")
	}
	r, err := validText("reason", a.Reason, maxReason)
	if err != nil {
		return err
	}
	a.Host, a.Reason = h, r
	return nil
}

// Validate normalizes and checks the arguments.
func (a *ChangeArgs) Validate() error {
	d, err := validText("description", a.Description, maxDescription)
	if err != nil {
		return err
	}
	a.Description = d
	return nil
}
