// Package dagtest provides test doubles for the dag executor: a fake clock
// that sleeps instantly, a configurable fake step that blocks, fails and
// panics on demand, a recorder of what the fake steps did, and an observer
// that keeps every event.
package dagtest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// FakeClock is a dag.Clock whose Sleep returns at once, recording the
// requested delay and advancing Now by it, so retry backoff can be asserted
// exactly without waiting. It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

var _ dag.Clock = (*FakeClock)(nil)

// NewFakeClock returns a clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep records d and advances the clock by it. Like a real sleep it fails
// with ctx.Err() if ctx is already done, without recording.
func (c *FakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

// Advance moves the clock forward by d, as if d passed.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleeps returns the delays requested so far, in order.
func (c *FakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sleeps)
}
