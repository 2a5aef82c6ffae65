package manifest

import _ "embed"

//go:embed schema.json
var schemaJSON []byte

// Schema returns the manifest's JSON Schema (draft 2020-12), for editors
// and external tooling. It accepts exactly what Parse and Validate accept
// except for checks that span entries (an agent's bottle must exist; git
// Names and route hosts are unique within a bottle), duplicate keys, and
// the prompt limit, which the schema counts in characters and Validate in
// bytes. The returned slice is a copy.
func Schema() []byte {
	return append([]byte(nil), schemaJSON...)
}
