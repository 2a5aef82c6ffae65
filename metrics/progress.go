package metrics

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/mattn/go-runewidth"
	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/bot-bottle/bot-bottle/dag"
)

// ProgressMode selects how a launch reports progress while it runs.
type ProgressMode string

const (
	// ProgressAuto is ProgressTTY when the output is a terminal, else
	// ProgressPlain.
	ProgressAuto ProgressMode = "auto"
	// ProgressTTY redraws one line per running step in place.
	ProgressTTY ProgressMode = "tty"
	// ProgressPlain prints one timestamped line per event, for CI logs.
	ProgressPlain ProgressMode = "plain"
	// ProgressNone prints nothing.
	ProgressNone ProgressMode = "none"
)

// ProgressModes lists the accepted modes, for flag help.
var ProgressModes = []ProgressMode{ProgressAuto, ProgressTTY, ProgressPlain, ProgressNone}

// ParseProgressMode accepts the value of a --progress flag.
func ParseProgressMode(s string) (ProgressMode, error) {
	for _, m := range ProgressModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown progress mode %q (want auto, tty, plain or none)", s)
}

// Progress is a live renderer of a launch. It receives the executor's
// events like any dag.Observer, possibly from several goroutines at once.
// Close stops it and flushes what is left to draw; it must be called once
// the execution has returned, and events after it are ignored.
type Progress interface {
	dag.Observer
	Close() error
}

type progressConfig struct {
	color       *bool
	refreshRate time.Duration
}

// ProgressOption tunes NewProgress.
type ProgressOption func(*progressConfig)

// WithColor forces colour on or off. Without it, colour is used only on a
// terminal. A non-empty NO_COLOR environment variable turns colour off in
// any case (https://no-color.org).
func WithColor(on bool) ProgressOption {
	return func(c *progressConfig) { c.color = &on }
}

// WithRefreshRate sets how often the tty display redraws (default 120ms).
func WithRefreshRate(d time.Duration) ProgressOption {
	return func(c *progressConfig) { c.refreshRate = d }
}

// NewProgress returns the renderer for mode writing to w.
//
// The tty mode moves the cursor to redraw in place even under NO_COLOR,
// which removes colour only; a user who wants no escape sequences at all
// picks the plain mode.
func NewProgress(w io.Writer, mode ProgressMode, opts ...ProgressOption) (Progress, error) {
	cfg := progressConfig{refreshRate: 120 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	terminal := IsTerminal(w)
	color := terminal
	if cfg.color != nil {
		color = *cfg.color
	}
	if os.Getenv("NO_COLOR") != "" {
		color = false
	}
	if mode == ProgressAuto {
		mode = ProgressPlain
		if terminal {
			mode = ProgressTTY
		}
	}
	switch mode {
	case ProgressNone:
		return nopProgress{}, nil
	case ProgressPlain:
		return &plainProgress{w: w, color: color}, nil
	case ProgressTTY:
		return newTTYProgress(w, color, cfg.refreshRate), nil
	default:
		return nil, fmt.Errorf("unknown progress mode %q", mode)
	}
}

// IsTerminal reports whether w is a terminal (an *os.File whose descriptor
// answers terminal ioctls; a pipe, a regular file or /dev/null does not).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return cupwriter.New(f, false).IsTerminal()
}

type nopProgress struct{}

func (nopProgress) OnEvent(dag.Event) {}
func (nopProgress) Close() error      { return nil }

// ANSI SGR sequences used when colour is on.
const (
	sgrReset  = "\x1b[0m"
	sgrGreen  = "\x1b[32m"
	sgrRed    = "\x1b[31m"
	sgrYellow = "\x1b[33m"
	sgrGrey   = "\x1b[90m"
)

func paint(on bool, sgr, s string) string {
	if !on {
		return s
	}
	return sgr + s + sgrReset
}

// plainProgress writes one line per event. Lines are written whole under
// a lock, so concurrent steps never interleave within a line.
type plainProgress struct {
	mu    sync.Mutex
	w     io.Writer
	color bool
	err   error
}

func (p *plainProgress) OnEvent(e dag.Event) {
	line := FormatEvent(e, p.color) + "\n"
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		_, p.err = io.WriteString(p.w, line)
	}
}

// Close reports the first write error, if any.
func (p *plainProgress) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// FormatEvent renders e as one plain-mode line (without the newline):
// the wall-clock time, the offset from the launch start, the step and what
// happened, e.g.
//
//	10:32:45.123 +0.412s boot started (attempt 1)
//	10:32:45.530 +0.819s boot retrying in 250ms: connection refused
//
// Error text is flattened to one line with control characters replaced,
// so a log line is always one event and never carries terminal escapes.
func FormatEvent(e dag.Event, color bool) string {
	var what string
	switch e.Kind {
	case dag.EventStarted:
		what = fmt.Sprintf("started (attempt %d)", e.Attempt)
	case dag.EventRetrying:
		what = paint(color, sgrYellow, "retrying") + " in " + fmtDur(e.Delay)
	case dag.EventSucceeded:
		what = paint(color, sgrGreen, "succeeded") + " in " + fmtDur(e.Duration)
		if e.Attempt > 1 {
			what += fmt.Sprintf(" (attempt %d)", e.Attempt)
		}
	case dag.EventFailed:
		what = paint(color, sgrRed, "failed") + " after " + fmtDur(e.Duration)
		if e.Attempt > 1 {
			what += fmt.Sprintf(" (attempt %d)", e.Attempt)
		}
	case dag.EventCancelled:
		what = paint(color, sgrGrey, "cancelled") + " after " + fmtDur(e.Duration)
	case dag.EventSkipped:
		what = paint(color, sgrGrey, "skipped")
	case dag.EventUndoing:
		what = "undoing"
	case dag.EventUndone:
		what = "undone in " + fmtDur(e.Duration)
	case dag.EventUndoFailed:
		what = paint(color, sgrRed, "undo failed") + " after " + fmtDur(e.Duration)
	default:
		what = oneLine(string(e.Kind))
	}
	if e.Err != nil {
		what += ": " + oneLine(e.Err.Error())
	}
	return fmt.Sprintf("%s +%.3fs %s %s", e.Time.Format("15:04:05.000"), e.Offset.Seconds(), oneLine(e.Step), what)
}

// oneLine flattens s to a single line free of control characters: line
// breaks and tabs become spaces, other control characters (ESC included)
// become U+FFFD.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return unicode.ReplacementChar
		}
		return r
	}, strings.TrimSpace(s))
}

// ttyProgress draws one line per running step with mpb: a spinner, the
// step, its attempt and elapsed time. A finished step's line is drawn once
// more with its mark and duration and then scrolls up out of the live
// area (mpb's pop-completed mode), so the live area only holds what runs.
type ttyProgress struct {
	p     *mpb.Progress
	color bool

	mu     sync.Mutex
	lines  map[string]*ttyLine // live lines by key (step ID, or "undo " + ID)
	closed bool
}

// ttyLine is read by mpb's render goroutine and written by OnEvent, hence
// the atomics.
type ttyLine struct {
	label   string
	start   time.Time
	attempt atomic.Int64
	note    atomic.Pointer[string] // e.g. the pending retry
	final   atomic.Pointer[ttyFinal]
	bar     *mpb.Bar
}

type ttyFinal struct {
	mark, sgr, text string
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func newTTYProgress(w io.Writer, color bool, refresh time.Duration) *ttyProgress {
	if f, ok := w.(*os.File); ok {
		// mpb sizes the display from the terminal and draws nothing on one
		// that reports 0x0 (a pseudo-terminal nobody sized, as some CI
		// runners allocate). Hiding the file makes mpb use its default
		// 80 columns instead.
		if width, height, err := cupwriter.New(f, false).GetTermSize(); err != nil || width <= 0 || height <= 0 {
			w = struct{ io.Writer }{f}
		}
	}
	return &ttyProgress{
		p: mpb.New(
			mpb.WithOutput(w),
			// The mode was chosen (or detected) by the caller: draw as on
			// a terminal even when w is a wrapper around one.
			mpb.ForceTTY(),
			mpb.WithAutoRefresh(),
			mpb.WithRefreshRate(refresh),
			mpb.PopCompletedMode(),
		),
		color: color,
		lines: make(map[string]*ttyLine),
	}
}

func (t *ttyProgress) OnEvent(e dag.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	id := oneLine(e.Step)
	switch e.Kind {
	case dag.EventStarted:
		l := t.line(id, id)
		l.attempt.Store(int64(e.Attempt))
		l.note.Store(nil)
	case dag.EventRetrying:
		l := t.line(id, id)
		note := "failed, retrying in " + fmtDur(e.Delay)
		if e.Err != nil {
			note += ": " + oneLine(e.Err.Error())
		}
		l.note.Store(&note)
	case dag.EventSucceeded:
		text := fmtDur(e.Duration)
		if e.Attempt > 1 {
			text += fmt.Sprintf(" (attempt %d)", e.Attempt)
		}
		t.finish(id, id, ttyFinal{"✓", sgrGreen, text})
	case dag.EventFailed:
		t.finish(id, id, ttyFinal{"✗", sgrRed, "failed after " + fmtDur(e.Duration) + errSuffix(e.Err)})
	case dag.EventCancelled:
		t.finish(id, id, ttyFinal{"✗", sgrGrey, "cancelled after " + fmtDur(e.Duration)})
	case dag.EventSkipped:
		t.finish(id, id, ttyFinal{"-", sgrGrey, "skipped" + errSuffix(e.Err)})
	case dag.EventUndoing:
		l := t.line("undo "+id, "undo "+id)
		l.attempt.Store(0)
	case dag.EventUndone:
		t.finish("undo "+id, "undo "+id, ttyFinal{"✓", sgrYellow, fmtDur(e.Duration)})
	case dag.EventUndoFailed:
		t.finish("undo "+id, "undo "+id, ttyFinal{"✗", sgrRed, "failed after " + fmtDur(e.Duration) + errSuffix(e.Err)})
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + oneLine(err.Error())
}

// line returns the live line for key, adding it on first use. Called with
// t.mu held.
func (t *ttyProgress) line(key, label string) *ttyLine {
	if l, ok := t.lines[key]; ok {
		return l
	}
	l := &ttyLine{label: label, start: time.Now()}
	bar, err := t.p.Add(0, mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
		_, err := io.WriteString(w, l.render(t.color, st.AvailableWidth))
		return err
	}))
	if err != nil {
		// The container has shut down; keep the line so later events
		// about it are harmless.
		l.final.Store(&ttyFinal{})
	}
	l.bar = bar
	t.lines[key] = l
	return l
}

// finish draws the line's final state and lets it leave the live area.
// Called with t.mu held.
func (t *ttyProgress) finish(key, label string, f ttyFinal) {
	l := t.line(key, label)
	l.final.Store(&f)
	delete(t.lines, key)
	if l.bar != nil {
		l.bar.SetTotal(-1, true)
	}
}

func (l *ttyLine) render(color bool, width int) string {
	if f := l.final.Load(); f != nil {
		text := runewidth.Truncate(l.label+"  "+f.text, max(width-2, 1), "…")
		return paint(color, f.sgr, f.mark) + " " + text
	}
	elapsed := time.Since(l.start)
	frame := spinnerFrames[int(elapsed/(100*time.Millisecond))%len(spinnerFrames)]
	status := fmt.Sprintf("%.1fs", elapsed.Seconds())
	if n := l.attempt.Load(); n > 0 {
		status = fmt.Sprintf("attempt %d  %s", n, status)
	}
	if note := l.note.Load(); note != nil {
		status += "  " + *note
	}
	return frame + " " + runewidth.Truncate(l.label+"  "+status, max(width-2, 1), "…")
}

// Close marks what is still live as interrupted, waits for the final
// redraw and stops the display.
func (t *ttyProgress) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	for key, l := range t.lines {
		l.final.Store(&ttyFinal{"✗", sgrGrey, "interrupted"})
		delete(t.lines, key)
		if l.bar != nil {
			l.bar.SetTotal(-1, true)
		}
	}
	t.mu.Unlock()
	t.p.Wait()
	return t.p.Error
}
