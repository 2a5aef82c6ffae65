package steps

import (
	"encoding/json"
	"os"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// writeJSONAtomic writes v as indented JSON to path with mode perm,
// atomically (sidecars may be reading an older version).
func writeJSONAtomic(path string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, perm)
}
