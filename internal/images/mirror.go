package images

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// EnvDebianMirror overrides the Debian archive debootstrap fetches from.
const EnvDebianMirror = "BOT_BOTTLE_DEBIAN_MIRROR"

// debianSuites are the suite names of Debian's main archive; a sources entry
// for one of them (and not -security, -updates or a third-party suite) names
// the main archive.
var debianSuites = []string{
	"bullseye", "bookworm", "trixie", "forky", "sid",
	"oldstable", "stable", "testing", "unstable",
}

// aptSources are where DebianMirror looks, in order.
var aptSources = struct {
	list    string
	listDir string
}{"/etc/apt/sources.list", "/etc/apt/sources.list.d"}

// DebianMirror returns the Debian archive URL to debootstrap from: the
// BOT_BOTTLE_DEBIAN_MIRROR environment variable, else the host's own apt
// configuration (deb822 .sources files, then one-line .list files). Suite
// entries for the build suite win over other Debian suites.
func DebianMirror() (string, error) {
	if m := strings.TrimSpace(os.Getenv(EnvDebianMirror)); m != "" {
		if err := checkMirrorURL(m); err != nil {
			return "", fmt.Errorf("%s: %w", EnvDebianMirror, err)
		}
		return m, nil
	}
	var entries []sourceEntry
	sources, _ := filepath.Glob(filepath.Join(aptSources.listDir, "*.sources"))
	for _, p := range sources {
		data, err := os.ReadFile(p)
		if err == nil {
			entries = append(entries, parseDeb822(string(data))...)
		}
	}
	lists, _ := filepath.Glob(filepath.Join(aptSources.listDir, "*.list"))
	for _, p := range append([]string{aptSources.list}, lists...) {
		data, err := os.ReadFile(p)
		if err == nil {
			entries = append(entries, parseOneLine(string(data))...)
		}
	}
	if m := pickMirror(entries); m != "" {
		return m, nil
	}
	return "", errors.New("no Debian archive found in the apt sources; set " + EnvDebianMirror + " to a Debian mirror URL")
}

// sourceEntry is one (URI, suite) pair of an apt "deb" source.
type sourceEntry struct {
	uri   string
	suite string
}

// pickMirror prefers an entry for the build suite, then any main-archive
// Debian suite, and never security, updates, backports or third-party
// repositories (whose suites are not Debian codenames).
func pickMirror(entries []sourceEntry) string {
	for _, want := range []func(string) bool{
		func(s string) bool { return s == Suite },
		func(s string) bool { return slices.Contains(debianSuites, s) },
	} {
		for _, e := range entries {
			if want(e.suite) && checkMirrorURL(e.uri) == nil {
				return e.uri
			}
		}
	}
	return ""
}

func checkMirrorURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("mirror %q has no host", s)
		}
	case "file":
	default:
		return fmt.Errorf("mirror %q: scheme must be http, https or file", s)
	}
	return nil
}

// parseDeb822 reads deb822 stanzas (blank-line separated "Key: value"
// fields) and returns the URI/suite pairs of enabled "deb" stanzas.
func parseDeb822(data string) []sourceEntry {
	var out []sourceEntry
	flush := func(f map[string]string) {
		if len(f) == 0 {
			return
		}
		if en, ok := f["enabled"]; ok && strings.EqualFold(en, "no") {
			return
		}
		if !slices.Contains(strings.Fields(f["types"]), "deb") {
			return
		}
		for _, uri := range strings.Fields(f["uris"]) {
			for _, suite := range strings.Fields(f["suites"]) {
				out = append(out, sourceEntry{uri: uri, suite: suite})
			}
		}
	}
	fields := map[string]string{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush(fields)
			fields, last = map[string]string{}, ""
		case strings.HasPrefix(trimmed, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + trimmed
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush(fields)
	return out
}

// parseOneLine reads "deb [options] URI suite components..." lines.
func parseOneLine(data string) []sourceEntry {
	var out []sourceEntry
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options may hold spaces: skip to the field closing them.
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, sourceEntry{uri: f[0], suite: f[1]})
	}
	return out
}
