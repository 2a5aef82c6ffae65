package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
)

// syncBuffer is a bytes.Buffer safe to write from mpb's goroutine while a
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func feed(p dag.Observer, events []dag.Event) {
	for _, e := range events {
		p.OnEvent(e)
	}
}

// closeWithin fails the test instead of hanging when Close deadlocks.
func closeWithin(t *testing.T, p Progress, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(d):
		require.FailNow(t, "Close did not return", "after %s", d)
	}
}

func TestPlainProgressPrintsOneLinePerEvent(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	var out bytes.Buffer
	p, err := NewProgress(&out, ProgressPlain)
	require.NoError(t, err)
	events := append(scriptedEvents(),
		dag.Event{Kind: dag.EventUndoing, Step: "image", Time: fixtureStart.Add(ms(800)), Offset: ms(800)},
		dag.Event{Kind: dag.EventUndone, Step: "image", Time: fixtureStart.Add(ms(850)), Offset: ms(850), Duration: ms(50)},
		dag.Event{Kind: dag.EventUndoFailed, Step: "network", Time: fixtureStart.Add(ms(870)), Offset: ms(870),
			Duration: ms(20), Err: errors.New("network in use\nby 2 containers")},
	)
	feed(p, events)
	require.NoError(t, p.Close())

	// fixtureStart is 10:32:45.123456789 UTC; each line shows the event's
	// wall time to the millisecond and its offset from the launch start.
	want := strings.Join([]string{
		"10:32:45.123 +0.000s image started (attempt 1)",
		"10:32:45.223 +0.100s sidecar:git-gate started (attempt 1)",
		"10:32:45.223 +0.100s sidecar:egress started (attempt 1)",
		"10:32:45.423 +0.300s sidecar:git-gate retrying in 100ms: connection refused",
		"10:32:45.523 +0.400s ca started (attempt 1)",
		"10:32:45.523 +0.400s sidecar:git-gate started (attempt 2)",
		"10:32:45.523 +0.400s image succeeded in 400ms",
		"10:32:45.523 +0.400s sidecar:egress failed after 300ms: exit status 1",
		"10:32:45.573 +0.450s ca cancelled after 50ms: context canceled",
		"10:32:45.823 +0.700s sidecar:git-gate succeeded in 300ms (attempt 2)",
		"10:32:45.823 +0.700s boot skipped",
		"10:32:45.923 +0.800s image undoing",
		"10:32:45.973 +0.850s image undone in 50ms",
		"10:32:45.993 +0.870s network undo failed after 20ms: network in use by 2 containers",
	}, "\n") + "\n"
	assert.Equal(t, want, out.String())

	// The same lines, computed event by event, are what FormatEvent gives.
	var lines []string
	for _, e := range events {
		lines = append(lines, FormatEvent(e, false))
	}
	assert.Equal(t, want, strings.Join(lines, "\n")+"\n")
}

var escapeByte = regexp.MustCompile("\x1b")

func TestPlainProgressColourAndNoColor(t *testing.T) {
	evil := dag.Event{Kind: dag.EventFailed, Step: "boot\x1b[2J", Time: fixtureStart, Duration: ms(5),
		Err: errors.New("\x1b[31mred\x1b[0m output")}

	t.Setenv("NO_COLOR", "")
	var coloured bytes.Buffer
	p, err := NewProgress(&coloured, ProgressPlain, WithColor(true))
	require.NoError(t, err)
	feed(p, append(scriptedEvents(), evil))
	require.NoError(t, p.Close())
	assert.Contains(t, coloured.String(), sgrGreen+"succeeded"+sgrReset, "colour was asked for")

	t.Setenv("NO_COLOR", "1")
	var plain bytes.Buffer
	p, err = NewProgress(&plain, ProgressPlain, WithColor(true))
	require.NoError(t, err)
	feed(p, append(scriptedEvents(), evil))
	require.NoError(t, p.Close())
	assert.False(t, escapeByte.MatchString(plain.String()), "NO_COLOR wins over WithColor:\n%q", plain.String())
	assert.Contains(t, plain.String(), "boot\uFFFD[2J failed after 5ms: \uFFFD[31mred\uFFFD[0m output",
		"escapes inside step ids and errors are defused too")
	assert.Equal(t, len(scriptedEvents())+1, strings.Count(plain.String(), "\n"))
}

func TestPlainProgressDefaultsToNoColourOffATerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	var out bytes.Buffer
	p, err := NewProgress(&out, ProgressPlain)
	require.NoError(t, err)
	feed(p, scriptedEvents())
	require.NoError(t, p.Close())
	assert.NotContains(t, out.String(), "\x1b")
}

func TestPlainProgressIsSafeForConcurrentSteps(t *testing.T) {
	var out syncBuffer
	p, err := NewProgress(&out, ProgressPlain)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				p.OnEvent(dag.Event{Kind: dag.EventStarted, Step: fmt.Sprintf("w%d-%d", w, i), Attempt: 1, Time: fixtureStart})
			}
		}()
	}
	wg.Wait()
	require.NoError(t, p.Close())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 160)
	for _, l := range lines {
		assert.Regexp(t, `^10:32:45\.123 \+0\.000s w\d-\d+ started \(attempt 1\)$`, l, "lines never interleave")
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestPlainProgressReportsWriteErrorsOnClose(t *testing.T) {
	w := &failingWriter{}
	p, err := NewProgress(w, ProgressPlain)
	require.NoError(t, err)
	feed(p, scriptedEvents())
	assert.ErrorContains(t, p.Close(), "disk full")
	assert.Equal(t, 1, w.n, "no write is attempted after the first failure")
}

func TestNoneProgressWritesNothing(t *testing.T) {
	var out bytes.Buffer
	p, err := NewProgress(&out, ProgressNone)
	require.NoError(t, err)
	feed(p, scriptedEvents())
	require.NoError(t, p.Close())
	assert.Zero(t, out.Len())
}

func TestAutoProgressPicksPlainOffATerminal(t *testing.T) {
	var out bytes.Buffer
	p, err := NewProgress(&out, ProgressAuto)
	require.NoError(t, err)
	assert.IsType(t, &plainProgress{}, p)

	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer f.Close()
	assert.False(t, IsTerminal(f), "a regular file is not a terminal")
	p, err = NewProgress(f, ProgressAuto)
	require.NoError(t, err)
	assert.IsType(t, &plainProgress{}, p)

	if devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer devNull.Close()
		assert.False(t, IsTerminal(devNull), "a character device that is not a tty")
	}
}

func TestParseProgressMode(t *testing.T) {
	for _, m := range ProgressModes {
		got, err := ParseProgressMode(string(m))
		require.NoError(t, err)
		assert.Equal(t, m, got)
	}
	_, err := ParseProgressMode("fancy")
	assert.ErrorContains(t, err, "fancy")
	_, err = NewProgress(&bytes.Buffer{}, ProgressMode("fancy"))
	assert.Error(t, err)
}

// ansi matches the escape sequences mpb and the colours use.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

func TestTTYProgressRendersToABuffer(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	out := &syncBuffer{}
	p, err := NewProgress(out, ProgressTTY, WithColor(true), WithRefreshRate(5*time.Millisecond))
	require.NoError(t, err)

	events := scriptedEvents()
	feed(p, events[:4]) // image, git-gate and egress running; git-gate retrying
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`sidecar:git-gate  attempt 1  \d+\.\ds  failed, retrying in 100ms`).
			MatchString(ansi.ReplaceAllString(out.String(), ""))
	}, 5*time.Second, 5*time.Millisecond, "live lines are drawn while steps run")
	feed(p, events[4:])
	p.OnEvent(dag.Event{Kind: dag.EventStarted, Step: "workspace", Attempt: 1}) // still running at Close
	closeWithin(t, p, 10*time.Second)

	raw := out.String()
	text := ansi.ReplaceAllString(raw, "")
	for _, want := range []string{
		"✓ image  400ms",
		"✓ sidecar:git-gate  300ms (attempt 2)",
		"✗ sidecar:egress  failed after 300ms: exit status 1",
		"✗ ca  cancelled after 50ms",
		"- boot  skipped",
		"✗ workspace  interrupted",
	} {
		assert.Contains(t, text, want)
	}
	assert.Regexp(t, `sidecar:git-gate  attempt 1  \d+\.\ds`, text, "running lines show attempt and elapsed time")
	assert.Contains(t, raw, sgrGreen+"✓"+sgrReset)
	assert.Contains(t, raw, sgrRed+"✗"+sgrReset)

	// Events after Close are ignored rather than panicking on a stopped
	// container.
	p.OnEvent(dag.Event{Kind: dag.EventStarted, Step: "late", Attempt: 1})
	assert.NotContains(t, ansi.ReplaceAllString(out.String(), ""), "late")
	require.NoError(t, p.Close())
}

func TestTTYProgressHonoursNoColor(t *testing.T) {
	t.Setenv("NO_COLOR", "1")
	out := &syncBuffer{}
	p, err := NewProgress(out, ProgressTTY, WithColor(true), WithRefreshRate(5*time.Millisecond))
	require.NoError(t, err)
	feed(p, scriptedEvents())
	closeWithin(t, p, 10*time.Second)
	raw := out.String()
	assert.Contains(t, raw, "✓ image")
	for _, sgr := range []string{sgrGreen, sgrRed, sgrYellow, sgrGrey, sgrReset} {
		assert.NotContains(t, raw, sgr)
	}
}

func TestTTYProgressUnderConcurrentEvents(t *testing.T) {
	out := &syncBuffer{}
	p, err := NewProgress(out, ProgressTTY, WithRefreshRate(2*time.Millisecond))
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := fmt.Sprintf("w%d-%d", w, i)
				p.OnEvent(dag.Event{Kind: dag.EventStarted, Step: id, Attempt: 1})
				p.OnEvent(dag.Event{Kind: dag.EventRetrying, Step: id, Attempt: 1, Delay: ms(1)})
				p.OnEvent(dag.Event{Kind: dag.EventStarted, Step: id, Attempt: 2})
				p.OnEvent(dag.Event{Kind: dag.EventSucceeded, Step: id, Attempt: 2, Duration: ms(3)})
				p.OnEvent(dag.Event{Kind: dag.EventUndoing, Step: id})
				p.OnEvent(dag.Event{Kind: dag.EventUndone, Step: id, Duration: ms(1)})
			}
		}()
	}
	wg.Wait()
	closeWithin(t, p, 10*time.Second)
	text := ansi.ReplaceAllString(out.String(), "")
	for w := range 6 {
		for i := range 10 {
			assert.Contains(t, text, fmt.Sprintf("✓ w%d-%d  3ms (attempt 2)", w, i))
			assert.Contains(t, text, fmt.Sprintf("✓ undo w%d-%d  1ms", w, i))
		}
	}
}
