package dagtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag/dagtest"
)

func TestFakeClockSleepRecordsAndAdvances(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := dagtest.NewFakeClock(start)
	require.NoError(t, c.Sleep(context.Background(), time.Second))
	require.NoError(t, c.Sleep(context.Background(), 2*time.Second))
	c.Advance(time.Minute)
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, c.Sleeps())
	assert.Equal(t, start.Add(time.Minute+3*time.Second), c.Now())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, c.Sleep(ctx, time.Hour), context.Canceled)
	assert.Len(t, c.Sleeps(), 2, "a cancelled sleep is not recorded")
}

func TestFakeStepFailsOnChosenAttempts(t *testing.T) {
	rec := &dagtest.Recorder{}
	s := &dagtest.FakeStep{Name: "s", FailUntil: 2, Rec: rec}
	ctx := context.Background()
	assert.Error(t, s.Run(ctx))
	assert.Error(t, s.Run(ctx))
	assert.NoError(t, s.Run(ctx))
	assert.Equal(t, 3, s.Attempts())
	assert.Equal(t, []string{"s", "s", "s"}, rec.Order(dagtest.KindFinish))
	assert.Equal(t, 1, rec.MaxConcurrent())
}
