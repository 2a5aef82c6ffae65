//go:build unix

package dag_test

import (
	"syscall"
	"time"
)

// processCPUTime returns the user plus system CPU time this process has
// used. The benchmarks report it beside wall time because wall time on a
// shared machine measures the neighbours as much as the code.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
