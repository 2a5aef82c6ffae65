package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// lockPoll is how often a waiting builder retries the lock. flock cannot be
// interrupted by a context, so the wait polls a non-blocking attempt.
const lockPoll = 200 * time.Millisecond

// lockFile takes an exclusive flock on path, waiting at most timeout (and no
// longer than ctx allows). Builders in other processes, parallel `go test`
// packages among them, serialise on it, so a base image is debootstrapped
// once. The lock dies with the process, so a crashed builder never wedges
// the others.
func lockFile(ctx context.Context, path string, timeout time.Duration, log io.Writer) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(timeout)
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited {
			fmt.Fprintf(log, "waiting for another image build holding %s\n", path)
			waited = true
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: still held by another build after %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}
