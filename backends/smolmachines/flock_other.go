//go:build !unix

package smolmachines

import "context"

// lockFile is a no-op where flock does not exist: concurrent exports then
// duplicate work, and the rename into place still keeps the cache whole.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
