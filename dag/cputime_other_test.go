//go:build !unix

package dag_test

import "time"

// processCPUTime is unavailable here; the CPU metric then reads zero.
func processCPUTime() time.Duration { return 0 }
