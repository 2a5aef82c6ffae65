package testskip

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// recorder captures whether a helper failed or skipped, without ending the
// real test.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatalf(f string, a ...any) { r.failed = f }
func (r *recorder) Skipf(f string, a ...any)  { r.skipped = f }

func TestUnlessFailsInCIAndSkipsElsewhere(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{}
	Unless(r, false, "no %s", "tar")
	assert.NotEmpty(t, r.failed)
	assert.Empty(t, r.skipped)

	t.Setenv("CI", "")
	r = &recorder{}
	Unless(r, false, "no %s", "tar")
	assert.Empty(t, r.failed)
	assert.NotEmpty(t, r.skipped)

	r = &recorder{}
	Unless(r, true, "never shown")
	assert.Empty(t, r.failed+r.skipped)
}
