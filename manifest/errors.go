package manifest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem with one value of a manifest.
//
// Path is dotted from the document root with list indexes in brackets
// ("bottles.dev.git[1].Upstream"); map keys that are not plain words are
// quoted ("bottles.dev.env[\"A B\"]"). The empty path means the document
// itself. Msg says what is wrong and Fix, when set, says what to write
// instead. Neither ever contains a secret: values are only quoted from
// the manifest itself, never from the host environment.
type FieldError struct {
	Path string
	Msg  string
	Fix  string
}

// Error renders "path: msg (fix)".
func (e *FieldError) Error() string {
	path := e.Path
	if path == "" {
		path = "(top level)"
	}
	if e.Fix == "" {
		return path + ": " + e.Msg
	}
	return path + ": " + e.Msg + " (" + e.Fix + ")"
}

// FieldErrors is every problem found in one pass, so that a user fixes a
// manifest in one edit instead of one error per run.
type FieldErrors []*FieldError

// Error prints one line per error, sorted by path.
func (es FieldErrors) Error() string {
	sorted := append(FieldErrors(nil), es...)
	sorted.sort()
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sort orders by path (numbers inside paths in numeric order, so git[2]
// comes before git[10]) and then by message, for stable output.
func (es FieldErrors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		if c := naturalCompare(es[i].Path, es[j].Path); c != 0 {
			return c < 0
		}
		return es[i].Msg < es[j].Msg
	})
}

// orNil returns nil for an empty list so callers can `return errs.orNil()`
// without producing a non-nil error interface holding an empty slice.
func (es FieldErrors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	es.sort()
	return es
}

// naturalCompare compares strings treating runs of ASCII digits as
// numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// collector accumulates FieldErrors.
type collector struct {
	errs FieldErrors
}

func (c *collector) add(path, msg, fix string) {
	c.errs = append(c.errs, &FieldError{Path: path, Msg: msg, Fix: fix})
}

func (c *collector) addf(path, fix, format string, args ...any) {
	c.add(path, fmt.Sprintf(format, args...), fix)
}

// SourceError is a FieldErrors (or a syntax error) attributed to a file
// or other named source. It unwraps to the underlying error so callers
// can errors.As it to FieldErrors.
type SourceError struct {
	Source string
	Err    error
}

// Error prints "source: error" for a single problem and a header line
// followed by one indented line per problem otherwise.
func (e *SourceError) Error() string {
	if fe, ok := e.Err.(FieldErrors); ok && len(fe) > 1 {
		lines := strings.Split(fe.Error(), "\n")
		return fmt.Sprintf("%s: %d problems:\n  %s", e.Source, len(fe), strings.Join(lines, "\n  "))
	}
	return e.Source + ": " + e.Err.Error()
}

func (e *SourceError) Unwrap() error { return e.Err }

// Path building. Keys made only of letters, digits, '_' and '-' are
// written bare; anything else is quoted so that hostile keys (newlines,
// terminal escapes, dots) cannot forge or garble a path. A key too long to
// be a valid name is cut, so one huge key cannot make every message about
// it huge.

// maxPathKey is the longest key written into a path whole.
const maxPathKey = 64

func joinKey(base, key string) string {
	if len(key) > maxPathKey {
		return base + "[" + quoteShort(key) + "]"
	}
	if !plainKey(key) {
		return base + "[" + strconv.Quote(key) + "]"
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

func joinIndex(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
