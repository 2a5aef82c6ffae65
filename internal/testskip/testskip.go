// Package testskip is the one way tests may skip: never under CI, where a
// skipped test would prove nothing, and loudly elsewhere. It imports nothing
// of the module, so every package's tests (internal ones included) can use
// it without an import cycle.
package testskip

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether tests run under CI (the CI variable is set).
func InCI() bool { return os.Getenv("CI") != "" }

// Unless skips the test when ok is false: under CI that is a failure,
// elsewhere a skip whose message says what is missing.
func Unless(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	why := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("CI is set, so this test must run, but: %s", why)
		return
	}
	t.Skipf("SKIPPING: %s", why)
}

// Short skips a slow test under -short. CI runs every test, so -short
// under CI fails instead.
func Short(t testing.TB, what string) {
	t.Helper()
	Unless(t, !testing.Short(), "-short: %s", what)
}
