package manifest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// How manifest values reach the outside world, and so why each rule
// below exists:
//
//   - Every value travels to docker, smolvm, git and the sidecars as a
//     whole argv element or a file's content, never through a shell, so
//     shell metacharacters and quotes are inert everywhere. The prompt and
//     env values are therefore free text (only NUL is refused: it cannot
//     be passed in argv or environment strings).
//   - Values that become file or directory names (git Name, skill names)
//     or container and network names (bottle and agent names) are
//     whitelisted to plain ASCII, which also rules out odd Unicode
//     (look-alikes, bidi controls) where it could mislead. A git Name and
//     an Upstream are held to exactly what the git gate accepts, so a
//     launch never fails in the gate on a value the manifest let through.
//   - Values written to git config (Name, Upstream, git_user) must be one
//     line with no control characters, so they cannot add config entries.
//   - Values that git or ssh receive as an argument (Upstream,
//     IdentityFile) may not start with '-', so they cannot be read as
//     options; URL hosts and users must start with a letter or digit for
//     the same reason.
//   - Hosts are DNS names so that the egress proxy and firewall, which
//     match on the name a client connects to, see exactly what the
//     manifest means. IP literals are rejected: a policy keyed on names is
//     the one the proxies enforce, and an address would silently never
//     match.
//   - Header names are HTTP tokens and formats have no control
//     characters, so an injected header cannot split into two.
//   - Every value has a length bound: Linux refuses a single argument or
//     environment string over 128 KiB, so an unbounded value would fail a
//     launch deep inside a step instead of here.
//
// The same patterns are in schema.json; a test keeps them identical.
const (
	ctl = `\x00-\x1f\x7f-\x9f`

	namePattern     = `^[a-z0-9][a-z0-9-]{0,30}$`
	gitNamePattern  = `^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`
	skillPattern    = `^[A-Za-z0-9._][A-Za-z0-9._-]{0,99}$`
	dnsHost         = `[A-Za-z0-9][A-Za-z0-9.-]*`
	urlHost         = `(?:` + dnsHost + `|\[[0-9A-Fa-f:.]+\])`
	pathChars       = `[^` + ctl + ` ]`
	upstreamPattern = `^(?:` +
		`(?:ssh|git|https)://(?:[A-Za-z0-9_][A-Za-z0-9._~%!$&'()*+,;=-]*@)?` + urlHost + `(?::[0-9]{1,5})?(?:/` + pathChars + `*)?` +
		`|file:///` + pathChars + `*` +
		`|/` + pathChars + `+` +
		`|[A-Za-z0-9_][A-Za-z0-9._-]*@` + dnsHost + `:[^-` + ctl + ` ]` + pathChars + `*` +
		`)$`
	identityFilePattern = `^(?:[^-` + ctl + `][^` + ctl + `]*)?$`
	hostLabel           = `[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?`
	hostPattern         = `^(?:\*\.)?(?:` + hostLabel + `\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`
	envNamePattern      = `^[A-Za-z_][A-Za-z0-9_]*$`
	headerPattern       = "^[!#$%&'*+.^_`|~0-9A-Za-z-]*$"
	formatPattern       = `^[^` + ctl + `]*$`
	gitUserNamePattern  = `^[^<>` + ctl + `]*$`
	emailPattern        = `^(?:[^<> @` + ctl + `]+@[^<> ` + ctl + `]+)?$`
	imagePattern        = `^(?:[A-Za-z0-9][A-Za-z0-9._/:@-]*)?$`
	noNULPattern        = `^[^\x00]*$`

	// MaxHostLen is the longest DNS name (RFC 1123), wildcard included.
	MaxHostLen = 253
	// MaxImageLen bounds an image reference.
	MaxImageLen = 255
	// MaxPromptBytes bounds an agent's prompt; it is copied into the
	// sandbox as a file and passed to the agent.
	MaxPromptBytes = 1 << 20
	// MaxLineBytes bounds every one-line value that is not bounded more
	// tightly (Upstream, IdentityFile, git_user, header, format, env and
	// token_env names): PATH_MAX, and far below the 128 KiB a single
	// argument may take.
	MaxLineBytes = 4096
	// MaxEnvValueBytes bounds one env value and MaxEnvBytes the whole env
	// (every "KEY=value"): the agent's processes inherit it, and Linux
	// refuses to start a program whose environment is too large.
	MaxEnvValueBytes = 32 << 10
	MaxEnvBytes      = 256 << 10
	// TokenPlaceholder is replaced by the token in a route's Format.
	TokenPlaceholder = "{token}"
)

var (
	nameRe         = regexp.MustCompile(namePattern)
	gitNameRe      = regexp.MustCompile(gitNamePattern)
	skillRe        = regexp.MustCompile(skillPattern)
	upstreamRe     = regexp.MustCompile(upstreamPattern)
	identityFileRe = regexp.MustCompile(identityFilePattern)
	hostRe         = regexp.MustCompile(hostPattern)
	envNameRe      = regexp.MustCompile(envNamePattern)
	headerRe       = regexp.MustCompile(headerPattern)
	formatRe       = regexp.MustCompile(formatPattern)
	gitUserNameRe  = regexp.MustCompile(gitUserNamePattern)
	emailRe        = regexp.MustCompile(emailPattern)
	imageRe        = regexp.MustCompile(imagePattern)
)

// ReservedEnv lists environment variables a bottle sets itself; a
// manifest's env may not override them. The lower-case proxy variables
// are included because many tools honour them too.
var ReservedEnv = []string{
	"GIT_SSL_CAINFO", "HOME", "HTTPS_PROXY", "HTTP_PROXY", "NODE_EXTRA_CA_CERTS", "NO_PROXY",
	"PATH", "SSL_CERT_FILE", "USER", "http_proxy", "https_proxy", "no_proxy",
}

const (
	nameFix     = "use 1-31 lowercase letters, digits or '-', starting with a letter or digit; the name becomes part of container and network names"
	upstreamFix = "want ssh://, user@host:path, https://, git://, file:// or an absolute path"
	oneLineFix  = "values written to git config must be a single line without control characters"
	hostFix     = `want a DNS name such as "api.example.com" or a wildcard such as "*.example.com"; no scheme, port, path or IP address`
	dirNameFix  = "use letters, digits, '.', '_' or '-', not starting with '-', not '.' or '..'"
	gitNameFix  = "use letters, digits, '.', '_' or '-', starting with a letter or digit, without '..' or a .git suffix (the gate adds it), at most 100 characters"
)

// Validate checks every value of m and reports every problem at once as
// FieldErrors sorted by path. It accepts m with or without Normalize
// applied and never modifies it.
func Validate(m *Manifest) error {
	var c collector
	if m == nil {
		c.add("", "manifest is empty", "define bottles: and agents:")
		return c.errs.orNil()
	}
	findNUL(reflect.ValueOf(m).Elem(), "", &c)

	if len(m.Bottles) == 0 {
		c.add("bottles", "no bottles are defined", "define at least one bottle under bottles:")
	}
	if len(m.Agents) == 0 {
		c.add("agents", "no agents are defined", "define at least one agent under agents:")
	}
	bottleNames := m.BottleNames()
	for _, name := range bottleNames {
		path := joinKey("bottles", name)
		checkName(&c, path, "bottle", name)
		b := m.Bottles[name]
		if b == nil {
			c.add(path, "bottle is null", "write {} for an empty bottle")
			continue
		}
		validateBottle(&c, path, b)
	}
	for _, name := range m.AgentNames() {
		path := joinKey("agents", name)
		checkName(&c, path, "agent", name)
		a := m.Agents[name]
		if a == nil {
			c.add(path, "agent is null", "set at least bottle:")
			continue
		}
		validateAgent(&c, path, a, m, bottleNames)
	}
	return c.errs.orNil()
}

func checkName(c *collector, path, what, name string) {
	if !nameRe.MatchString(name) {
		c.addf(path, nameFix, "%s name %s is not allowed", what, quoteShort(name))
	}
}

func validateAgent(c *collector, path string, a *Agent, m *Manifest, bottleNames []string) {
	bpath := path + ".bottle"
	switch {
	case a.Bottle == "":
		fix := "define a bottle under bottles: and name it here"
		if len(bottleNames) > 0 {
			fix = "name the bottle this agent runs in: " + strings.Join(bottleNames, ", ")
		}
		c.add(bpath, "missing", fix)
	case hasNUL(a.Bottle):
	default:
		// A bottle that exists but is null is reported at the bottle.
		if _, exists := m.Bottles[a.Bottle]; !exists {
			c.addf(bpath, nameHint(a.Bottle, bottleNames, "bottles"), "bottle %s is not defined", quoteShort(a.Bottle))
		}
	}
	if len(a.Prompt) > MaxPromptBytes {
		c.addf(path+".prompt", "shorten it, or have the prompt tell the agent to read a file from the repository",
			"prompt is %d bytes, over the limit of 1 MiB (%d bytes)", len(a.Prompt), MaxPromptBytes)
	}
	seen := map[string]int{}
	for i, s := range a.Skills {
		p := joinIndex(path+".skills", i)
		if hasNUL(s) {
			continue
		}
		switch {
		case s == "":
			c.add(p, "skill name is empty", "name a directory under the skills directory")
		case strings.HasPrefix(s, "-"):
			c.addf(p, dirNameFix, "skill name %s starts with '-'", quoteShort(s))
		case strings.Contains(s, ".."), s == ".":
			c.addf(p, dirNameFix, "skill name %s would leave the skills directory", quoteShort(s))
		case strings.ContainsAny(s, `/\`):
			c.addf(p, "name the skill's directory, not a path; set BOT_BOTTLE_SKILLS_DIR to change where skills are read from",
				"skill name %s contains a path separator", quoteShort(s))
		case !skillRe.MatchString(s):
			c.addf(p, dirNameFix+", at most 100 characters", "skill name %s is not a plain directory name", quoteShort(s))
		default:
			if j, dup := seen[s]; dup {
				c.addf(p, "remove one of them", "skill %s is already listed at skills[%d]", quoteShort(s), j)
			} else {
				seen[s] = i
			}
		}
	}
}

func validateBottle(c *collector, path string, b *Bottle) {
	names := map[string]int{}
	for i, g := range b.Git {
		validateGit(c, joinIndex(path+".git", i), g, names, i)
	}
	if u := b.GitUser; u != nil {
		p := path + ".git_user"
		switch {
		case hasNUL(u.Name):
		case len(u.Name) > MaxLineBytes:
			c.addf(p+".name", "use a shorter name", "name is %d bytes, over the limit of %d", len(u.Name), MaxLineBytes)
		case hasControl(u.Name):
			c.add(p+".name", "contains a newline or other control character", oneLineFix)
		case !gitUserNameRe.MatchString(u.Name):
			c.add(p+".name", "contains '<' or '>'", "git writes identities as \"name <email>\"; remove the angle brackets")
		}
		switch {
		case u.Email == "" || hasNUL(u.Email):
		case len(u.Email) > MaxLineBytes:
			c.addf(p+".email", "use a shorter address", "address is %d bytes, over the limit of %d", len(u.Email), MaxLineBytes)
		case hasControl(u.Email):
			c.add(p+".email", "contains a newline or other control character", oneLineFix)
		case !strings.Contains(u.Email, "@"):
			c.addf(p+".email", `want an address such as "agent@example.com"`, "%s is not an email address: it has no '@'", quoteShort(u.Email))
		case !emailRe.MatchString(u.Email):
			c.addf(p+".email", `want a bare address such as "agent@example.com", without spaces or angle brackets`, "%s is not an email address", quoteShort(u.Email))
		}
	}
	routeHosts := map[string]int{}
	for i, r := range b.Routes() {
		validateRoute(c, joinIndex(path+".egress.routes", i), r, routeHosts, i)
	}
	for i, h := range b.Allow {
		checkHost(c, joinIndex(path+".allow", i), h)
	}
	switch {
	case hasNUL(b.Image):
	case len(b.Image) > MaxImageLen:
		c.addf(path+".image", "use a shorter image reference", "image reference is longer than %d characters", MaxImageLen)
	case !imageRe.MatchString(b.Image):
		c.addf(path+".image", `want an image reference such as "registry.example.com/agent:1.2"`, "%s is not an image reference", quoteShort(b.Image))
	}
	envBytes := 0
	for _, k := range sortedKeys(b.Env) {
		p := joinKey(path+".env", k)
		envBytes += len(k) + len(b.Env[k]) + 2 // "KEY=value" and its NUL
		switch {
		case len(k) > MaxLineBytes:
			c.addf(p, "use a shorter name", "variable name is %d bytes, over the limit of %d", len(k), MaxLineBytes)
		case !envNameRe.MatchString(k):
			c.addf(p, "use letters, digits and '_', not starting with a digit", "%s is not a valid environment variable name", quoteShort(k))
		case isReservedEnv(k):
			c.addf(p, "remove it; the bottle sets "+strings.Join(ReservedEnv, ", ")+" itself", "%s is set by the bottle", k)
		case len(b.Env[k]) > MaxEnvValueBytes:
			c.addf(p, "pass large data as a file in the repository instead", "value is %d bytes, over the limit of %d", len(b.Env[k]), MaxEnvValueBytes)
		}
	}
	if envBytes > MaxEnvBytes {
		c.addf(path+".env", "pass large data as a file in the repository instead", "the environment is %d bytes, over the limit of %d", envBytes, MaxEnvBytes)
	}
	switch b.Firewall {
	case "", FirewallBuiltin, FirewallPipelock:
	default:
		if !hasNUL(b.Firewall) {
			c.addf(path+".firewall", fmt.Sprintf("want %q (the default) or %q", FirewallBuiltin, FirewallPipelock), "unknown firewall %s", quoteShort(b.Firewall))
		}
	}
}

func validateGit(c *collector, path string, g GitEntry, names map[string]int, i int) {
	switch n := g.Name; {
	case hasNUL(n):
	case n == "":
		c.add(path+".Name", "missing", "name the repository; the agent clones it as git://<gate>/<Name>.git")
	case hasControl(n):
		c.add(path+".Name", "contains a newline or other control character", oneLineFix)
	case !gitNameRe.MatchString(n) || strings.Contains(n, "..") || strings.HasSuffix(n, ".git"):
		c.addf(path+".Name", gitNameFix, "%s is not a valid repository name", quoteShort(n))
	default:
		// The gate's mirrors may live on a case-insensitive filesystem.
		key := strings.ToLower(n)
		if j, dup := names[key]; dup {
			c.addf(path+".Name", "give each repository of a bottle its own Name", "%s is already used by git[%d]", quoteShort(n), j)
		} else {
			names[key] = i
		}
	}
	switch u := g.Upstream; {
	case hasNUL(u):
	case u == "":
		c.add(path+".Upstream", "missing", upstreamFix)
	case len(u) > MaxLineBytes:
		c.addf(path+".Upstream", upstreamFix, "upstream is %d bytes, over the limit of %d", len(u), MaxLineBytes)
	case strings.HasPrefix(u, "-"):
		c.addf(path+".Upstream", "git receives the upstream as an argument, so it must not look like an option", "%s starts with '-'", quoteShort(u))
	case hasControl(u):
		c.add(path+".Upstream", "contains a newline or other control character", oneLineFix)
	case strings.Contains(u, " "):
		c.addf(path+".Upstream", "the git gate refuses upstreams with spaces; percent-encode them (%20) in a URL, or move the repository", "%s contains a space", quoteShort(u))
	case hasPassword(u):
		c.addf(path+".Upstream", "never put credentials in the manifest; give the key to the gate with IdentityFile, or use a token route", "%s embeds a password", quoteShort(u))
	case !upstreamRe.MatchString(u):
		c.addf(path+".Upstream", upstreamFix, "%s is not a git URL", quoteShort(u))
	default:
		if err := checkURL(u); err != nil {
			c.addf(path+".Upstream", upstreamFix, "%s is not a valid URL: %v", quoteShort(u), err)
		}
	}
	switch f := g.IdentityFile; {
	case hasNUL(f):
	case len(f) > MaxLineBytes:
		c.addf(path+".IdentityFile", "write the path of a private key file", "path is %d bytes, over the limit of %d", len(f), MaxLineBytes)
	case strings.HasPrefix(f, "-"):
		c.addf(path+".IdentityFile", "ssh receives the path as an argument, so it must not look like an option; prefix a relative path with ./", "%s starts with '-'", quoteShort(f))
	case !identityFileRe.MatchString(f):
		c.add(path+".IdentityFile", "contains a newline or other control character", "write the path of a private key file on one line")
	}
}

func validateRoute(c *collector, path string, r Route, hosts map[string]int, i int) {
	if checkHost(c, path+".host", r.Host) {
		h := asciiLower(r.Host)
		if j, dup := hosts[h]; dup {
			c.addf(path+".host", "merge the two routes; a host can inject only one token", "%s is already routed by routes[%d]", quoteShort(r.Host), j)
		} else {
			hosts[h] = i
		}
	}
	if len(r.TokenEnv) > MaxLineBytes {
		c.addf(path+".token_env", "name the host environment variable holding the token", "name is %d bytes, over the limit of %d", len(r.TokenEnv), MaxLineBytes)
	} else if r.TokenEnv != "" && !hasNUL(r.TokenEnv) && !envNameRe.MatchString(r.TokenEnv) {
		c.addf(path+".token_env", "name the host environment variable holding the token, e.g. ANTHROPIC_API_KEY", "%s is not a valid environment variable name", quoteShort(r.TokenEnv))
	}
	if len(r.Header) > MaxLineBytes {
		c.addf(path+".header", `want an HTTP header name such as "Authorization"`, "header name is %d bytes, over the limit of %d", len(r.Header), MaxLineBytes)
	} else if !hasNUL(r.Header) && !headerRe.MatchString(r.Header) {
		c.addf(path+".header", `want an HTTP header name such as "Authorization" or "x-api-key"`, "%s is not a valid HTTP header name", quoteShort(r.Header))
	}
	switch {
	case hasNUL(r.Format):
	case len(r.Format) > MaxLineBytes:
		c.addf(path+".format", "a header value must be short", "format is %d bytes, over the limit of %d", len(r.Format), MaxLineBytes)
	case !formatRe.MatchString(r.Format):
		c.add(path+".format", "contains a newline or other control character", "a header value must be a single line")
	case r.TokenEnv != "" && r.Format != "" && !strings.Contains(r.Format, TokenPlaceholder):
		c.addf(path+".format", fmt.Sprintf("include %s where the token goes, e.g. %q", TokenPlaceholder, DefaultFormat), "format %s does not contain %s", quoteShort(r.Format), TokenPlaceholder)
	}
}

// checkHost reports whether h is an acceptable host, reporting it when
// not.
func checkHost(c *collector, path, h string) bool {
	if hasNUL(h) {
		return false
	}
	var problem string
	switch {
	case h == "":
		c.add(path, "missing", hostFix)
		return false
	case strings.Contains(h, "://"):
		problem = "has a scheme"
	case strings.Contains(h, "/"):
		problem = "has a path"
	case net.ParseIP(strings.Trim(h, "[]")) != nil:
		problem = "is an IP address"
	case strings.Contains(h, ":"):
		problem = "has a port"
	case len(h) > MaxHostLen:
		c.addf(path, hostFix, "host name is longer than %d characters", MaxHostLen)
		return false
	case hostRe.MatchString(h):
		return true
	default:
		problem = "is not a DNS name"
	}
	c.addf(path, hostFix, "%s %s", quoteShort(h), problem)
	return false
}

// hasPassword reports an upstream URL whose user information carries a
// password ("scheme://user:password@host").
func hasPassword(u string) bool {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	authority, _, _ := strings.Cut(rest, "/")
	userinfo, _, hasUser := strings.Cut(authority, "@")
	return hasUser && strings.Contains(userinfo, ":")
}

// checkURL parses the URL forms of an upstream the way the git gate does;
// the pattern cannot express percent-escapes or the port's range.
func checkURL(u string) error {
	if !strings.Contains(u, "://") {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	if port := p.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %s is out of range", port)
		}
	}
	return nil
}

func isReservedEnv(k string) bool {
	for _, r := range ReservedEnv {
		if k == r {
			return true
		}
	}
	return false
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// hasControl reports C0 and C1 control characters and DEL, matching the
// ctl class of the patterns.
func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return true
		}
	}
	return false
}

// quoteShort quotes a manifest value for an error message, escaping
// control characters and cutting long values.
func quoteShort(s string) string {
	r := []rune(s)
	if len(r) > 60 {
		return fmt.Sprintf("%q...", string(r[:60]))
	}
	return fmt.Sprintf("%q", s)
}

// findNUL reports every string value in v containing a NUL byte. It walks
// the structs by their json names so that new fields are covered without
// being listed. Map keys are not walked: every map's keys are checked
// against a whitelist elsewhere.
func findNUL(v reflect.Value, path string, c *collector) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			findNUL(v.Elem(), path, c)
		}
	case reflect.String:
		if hasNUL(v.String()) {
			c.add(path, "contains a NUL byte", "remove it; NUL cannot be passed to programs")
		}
	case reflect.Slice:
		for i := range v.Len() {
			findNUL(v.Index(i), joinIndex(path, i), c)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			findNUL(v.MapIndex(k), joinKey(path, k.String()), c)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			findNUL(v.Field(i), joinKey(path, name), c)
		}
	}
}
