package manifest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFieldErrorsSortNaturally(t *testing.T) {
	errs := FieldErrors{
		{Path: "b.git[10].Name", Msg: "ten"},
		{Path: "b.git[2].Name", Msg: "two"},
		{Path: "a", Msg: "second", Fix: "fix it"},
		{Path: "a", Msg: "first"},
		{Path: "", Msg: "root"},
	}
	assert.Equal(t, "(top level): root\na: first\na: second (fix it)\nb.git[2].Name: two\nb.git[10].Name: ten", errs.Error())
	// Error does not reorder the receiver.
	assert.Equal(t, "ten", errs[0].Msg)
}

func TestNaturalCompare(t *testing.T) {
	assert.Negative(t, naturalCompare("x[2]", "x[10]"))
	assert.Negative(t, naturalCompare("x[02]", "x[3]"))
	assert.Positive(t, naturalCompare("x[10]", "x[9]"))
	assert.Zero(t, naturalCompare("a1b", "a1b"))
	assert.Negative(t, naturalCompare("a", "ab"))
	assert.Negative(t, naturalCompare("A", "a"))
}

func TestOrNil(t *testing.T) {
	var errs FieldErrors
	assert.NoError(t, errs.orNil())
	errs = append(errs, &FieldError{Path: "p", Msg: "m"})
	assert.Error(t, errs.orNil())
}

func TestSourceError(t *testing.T) {
	one := &SourceError{Source: "b.yaml", Err: FieldErrors{{Path: "p", Msg: "m"}}}
	assert.Equal(t, "b.yaml: p: m", one.Error())

	two := &SourceError{Source: "b.yaml", Err: FieldErrors{{Path: "q", Msg: "m"}, {Path: "p", Msg: "m"}}}
	assert.Equal(t, "b.yaml: 2 problems:\n  p: m\n  q: m", two.Error())

	wrapped := fmt.Errorf("loading: %w", two)
	var fe FieldErrors
	require.True(t, errors.As(wrapped, &fe))
	assert.Len(t, fe, 2)
}

func TestJoinKeyQuotesHostileKeys(t *testing.T) {
	assert.Equal(t, "bottles.dev", joinKey("bottles", "dev"))
	assert.Equal(t, "top", joinKey("", "top"))
	assert.Equal(t, `env["A.B"]`, joinKey("env", "A.B"))
	assert.Equal(t, `env[""]`, joinKey("env", ""))
	assert.Equal(t, `x["a\nb\x1b"]`, joinKey("x", "a\nb\x1b"))
	assert.Equal(t, "x[3]", joinIndex("x", 3))
}
