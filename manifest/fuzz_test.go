package manifest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzLoad checks that no input makes Parse, Normalize or Validate panic,
// that a parsed manifest survives a JSON round trip unchanged, and that
// Normalize neither changes whether a manifest is valid nor does anything
// the second time. Seeds are the testdata manifests plus the corpus in
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"python-original.json", "good-full.yaml", "bad-many.yaml", "bad-keys.yaml"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{"bottles":{"dev":{}},"agents":{"demo":{"bottle":"dev"}}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, "fuzz")
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		js, err := json.Marshal(m)
		require.NoError(t, err)
		again, err := Parse(js, "round-trip")
		require.NoError(t, err, "re-parsing %s", js)
		require.Equal(t, m, again, "round trip through %s", js)

		invalid := Validate(m)
		againInvalid := Validate(again)
		require.Equal(t, errString(invalid), errString(againInvalid))

		m.Normalize()
		normalized := Validate(m)
		assert.Equal(t, invalid == nil, normalized == nil, "Normalize changed validity: before %v, after %v", invalid, normalized)
		once, err := json.Marshal(m)
		require.NoError(t, err)
		m.Normalize()
		twice, err := json.Marshal(m)
		require.NoError(t, err)
		require.Equal(t, string(once), string(twice), "Normalize is not idempotent")
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
