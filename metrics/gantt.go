package metrics

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bot-bottle/bot-bottle/dag"
)

// Gantt chart geometry, in SVG user units (pixels at 100 %).
const (
	ganttWidth         = 1000
	ganttLabelChars    = 36 // longer ids are shortened on screen; the tooltip has them whole
	ganttCharWidth     = 7.3
	ganttNoteWidth     = 190 // room right of the plot for the last bar's note
	ganttNoteCharWidth = 6.8
	ganttRowHeight     = 22
	ganttBarHeight     = 14
	ganttAxisY         = 100
	ganttRowsY         = 108
	ganttBottomSpace   = 16
	ganttMaxTicks      = 10
	ganttErrChars      = 60
)

// Bar colours. Critical-path bars are the only warm colour, so the eye goes
// to them first.
const (
	colourStep      = "#4c6ef5"
	colourCritical  = "#f76707"
	colourFailed    = "#e03131"
	colourCancelled = "#adb5bd"
	colourUndo      = "#9c36b5"
	colourText      = "#212529"
	colourMuted     = "#868e96"
	colourGrid      = "#dee2e6"
	colourStripe    = "#f8f9fa"
)

// WriteGantt draws res as a standalone SVG Gantt chart: one row per step in
// start order, bars to scale against a time axis, critical-path bars in
// their own colour, each retry attempt a separate segment (failed ones
// red), cancelled, skipped, undone and undo-failed steps marked in words as
// well as colour. The heading gives the wall time, the sum of the step
// durations (the time a strictly sequential launch would take) and their
// ratio, the parallelism the DAG achieved.
func WriteGantt(w io.Writer, res *dag.Result, title string) error {
	g := newGantt(res)
	bw := bufio.NewWriter(w)
	g.write(bw, title)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write gantt: %w", err)
	}
	return nil
}

type gantt struct {
	res      *dag.Result
	critical map[string]bool
	span     time.Duration // the time the x axis covers
	labelW   float64
	plotX    float64
	plotW    float64
	height   float64
}

func newGantt(res *dag.Result) *gantt {
	g := &gantt{res: res, critical: make(map[string]bool, len(res.CriticalPath))}
	for _, id := range res.CriticalPath {
		g.critical[id] = true
	}
	g.span = res.Wall
	longest := 4
	for _, s := range res.Steps {
		longest = max(longest, min(utf8.RuneCountInString(s.ID), ganttLabelChars))
		for _, sp := range attemptSpans(s) {
			g.span = max(g.span, sp.Start+sp.Duration)
		}
		if s.Undo != nil {
			g.span = max(g.span, s.Undo.Start+s.Undo.Duration)
		}
	}
	if g.span <= 0 {
		g.span = time.Millisecond // an empty chart still needs a scale
	}
	g.labelW = 16 + float64(longest)*ganttCharWidth
	g.plotX = g.labelW + 8
	g.plotW = ganttWidth - g.plotX - ganttNoteWidth
	g.height = ganttRowsY + float64(len(res.Steps))*ganttRowHeight + ganttBottomSpace
	return g
}

// x maps an offset from the launch start to a horizontal position.
func (g *gantt) x(d time.Duration) float64 { return g.plotX + g.width(d) }

// width maps a duration to a bar length; every bar uses the same scale.
func (g *gantt) width(d time.Duration) float64 {
	return float64(d) / float64(g.span) * g.plotW
}

func (g *gantt) write(w *bufio.Writer, title string) {
	var sum time.Duration
	for _, s := range g.res.Steps {
		sum += s.Duration
	}
	heading := fmt.Sprintf("wall %s · sum of step durations %s", fmtDur(g.res.Wall), fmtDur(sum))
	if g.res.Wall > 0 {
		heading += fmt.Sprintf(" · %.2f× (sum/wall)", float64(sum)/float64(g.res.Wall))
	}
	full := heading
	if title != "" {
		full = title + " — " + heading
	}

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%s" viewBox="0 0 %d %s" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`+"\n",
		ganttWidth, num(g.height), ganttWidth, num(g.height))
	fmt.Fprintf(w, "<title>%s</title>\n", esc(full))
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	if title != "" {
		fmt.Fprintf(w, `<text x="12" y="24" font-size="16" font-weight="bold" fill="%s">%s</text>`+"\n", colourText, esc(title))
	}
	fmt.Fprintf(w, `<text class="summary" x="12" y="44" font-size="13" fill="%s">%s</text>`+"\n", colourText, esc(heading))
	g.writeLegend(w)
	g.writeAxis(w)
	for i, s := range g.res.Steps {
		g.writeRow(w, i, s)
	}
	// The wall-time marker goes last so it is drawn over the bars.
	wx := g.x(g.res.Wall)
	fmt.Fprintf(w, `<line class="wall" x1="%s" y1="%d" x2="%s" y2="%s" stroke="%s" stroke-dasharray="4 3"/>`+"\n",
		num(wx), ganttAxisY, num(wx), num(g.height-ganttBottomSpace+4), colourText)
	w.WriteString("</svg>\n")
}

func (g *gantt) writeLegend(w *bufio.Writer) {
	items := []struct{ fill, label, extra string }{
		{colourStep, "step", ""},
		{colourCritical, "critical path", ""},
		{colourFailed, "failed attempt", ""},
		{colourCancelled, "cancelled", ""},
		{colourUndo, "undo (rollback)", ""},
		{colourStep, "undone step", ` fill-opacity="0.35"`},
	}
	x := 12.0
	for _, it := range items {
		fmt.Fprintf(w, `<rect class="legend" x="%s" y="58" width="12" height="12" fill="%s"%s/>`, num(x), it.fill, it.extra)
		fmt.Fprintf(w, `<text x="%s" y="68" fill="%s">%s</text>`+"\n", num(x+16), colourText, esc(it.label))
		x += 16 + float64(utf8.RuneCountInString(it.label))*6.6 + 18
	}
	fmt.Fprintf(w, `<text x="%s" y="68" fill="%s">dashed line: launch end</text>`+"\n", num(x), colourMuted)
}

func (g *gantt) writeAxis(w *bufio.Writer) {
	step := niceTick(g.span.Seconds(), ganttMaxTicks)
	bottom := g.height - ganttBottomSpace
	fmt.Fprintf(w, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s"/>`+"\n",
		num(g.plotX), ganttAxisY, num(g.plotX+g.plotW), ganttAxisY, colourMuted)
	for i := 0; ; i++ {
		v := float64(i) * step
		if v > g.span.Seconds()*(1+1e-9) || i > 4*ganttMaxTicks {
			break
		}
		x := g.plotX + v/g.span.Seconds()*g.plotW
		fmt.Fprintf(w, `<line class="grid" x1="%s" y1="%d" x2="%s" y2="%s" stroke="%s"/>`,
			num(x), ganttAxisY-4, num(x), num(bottom), colourGrid)
		fmt.Fprintf(w, `<text class="tick" x="%s" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n",
			num(x), ganttAxisY-8, colourMuted, esc(tickLabel(v, step)))
	}
}

func (g *gantt) writeRow(w *bufio.Writer, i int, s dag.StepResult) {
	top := ganttRowsY + float64(i)*ganttRowHeight
	barY := top + (ganttRowHeight-ganttBarHeight)/2
	textY := top + ganttRowHeight/2 + 4
	if i%2 == 1 {
		fmt.Fprintf(w, `<rect x="0" y="%s" width="%d" height="%d" fill="%s"/>`+"\n", num(top), ganttWidth, ganttRowHeight, colourStripe)
	}
	fmt.Fprintf(w, `<g class="step" data-step="%s" data-outcome="%s">`+"\n", esc(s.ID), esc(string(s.Outcome)))

	labelFill := colourText
	if s.Outcome == dag.OutcomeSkipped {
		labelFill = colourMuted
	}
	fmt.Fprintf(w, `<text class="label" x="%s" y="%s" text-anchor="end" font-family="ui-monospace, Menlo, Consolas, monospace" fill="%s"><title>%s</title>%s</text>`+"\n",
		num(g.labelW), num(textY), labelFill, esc(s.ID), esc(shorten(s.ID, ganttLabelChars)))

	spans := attemptSpans(s)
	end := g.plotX
	for a, sp := range spans {
		fill := colourStep
		if g.critical[s.ID] {
			fill = colourCritical
		}
		outcome, _ := attemptOutcome(s, a, len(spans))
		switch outcome {
		case string(dag.OutcomeFailed):
			fill = colourFailed
		case string(dag.OutcomeCancelled):
			fill = colourCancelled
		}
		extra := ""
		if s.Outcome == dag.OutcomeUndone || s.Outcome == dag.OutcomeUndoFailed {
			extra = ` fill-opacity="0.35"`
		}
		wd := g.width(sp.Duration)
		if wd < 1 {
			// Keep very short attempts visible without changing the
			// width attribute, which stays to scale.
			extra += fmt.Sprintf(` stroke="%s" stroke-width="1"`, fill)
		}
		tip := fmt.Sprintf("%s attempt %d/%d: %s, %s", s.ID, a+1, len(spans), fmtDur(sp.Duration), outcome)
		if sp.Err != "" {
			tip += ": " + sp.Err
		}
		fmt.Fprintf(w, `<rect class="bar attempt" data-step="%s" data-attempt="%d" data-duration="%s" x="%s" y="%s" width="%s" height="%d" fill="%s"%s><title>%s</title></rect>`+"\n",
			esc(s.ID), a+1, num(sp.Duration.Seconds()), num(g.x(sp.Start)), num(barY), num(wd), ganttBarHeight, fill, extra, esc(tip))
		if a > 0 {
			// A white notch where a retry begins, visible even when the
			// backoff is too short to leave a gap.
			fmt.Fprintf(w, `<line class="retry" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ffffff" stroke-width="2"/>`+"\n",
				num(g.x(sp.Start)), num(barY-1), num(g.x(sp.Start)), num(barY+ganttBarHeight+1))
		}
		end = max(end, g.x(sp.Start+sp.Duration))
	}
	if u := s.Undo; u != nil {
		stroke := colourUndo
		if u.Err != "" {
			stroke = colourFailed
		}
		tip := fmt.Sprintf("undo %s: %s", s.ID, fmtDur(u.Duration))
		if u.Err != "" {
			tip += ": " + u.Err
		}
		fmt.Fprintf(w, `<rect class="bar undo" data-step="%s" data-duration="%s" x="%s" y="%s" width="%s" height="%d" fill="%s" stroke="%s" stroke-width="1.5"><title>%s</title></rect>`+"\n",
			esc(s.ID), num(u.Duration.Seconds()), num(g.x(u.Start)), num(barY+3), num(g.width(u.Duration)), ganttBarHeight-6, colourUndo, stroke, esc(tip))
		end = max(end, g.x(u.Start+u.Duration))
	}

	note, noteFill := rowNote(s, len(spans))
	// Fit the note in the room left of the right edge; the tooltip keeps
	// it whole.
	room := int((ganttWidth - end - 10) / ganttNoteCharWidth)
	fmt.Fprintf(w, `<text class="note" x="%s" y="%s" fill="%s"><title>%s</title>%s</text>`+"\n",
		num(end+6), num(textY), noteFill, esc(note), esc(shorten(note, max(room, 8))))
	w.WriteString("</g>\n")
}

// rowNote is the text after a row's bars: the duration, the attempt count
// when retried, and the outcome unless it is plain success, so that a
// reader without colour vision (or a grey-scale print) sees it too.
func rowNote(s dag.StepResult, attempts int) (string, string) {
	if s.Outcome == dag.OutcomeSkipped {
		note := "skipped"
		if s.Err != nil {
			note += ": " + shorten(oneLine(s.Err.Error()), ganttErrChars)
		}
		return note, colourMuted
	}
	parts := []string{fmtDur(s.Duration)}
	if attempts > 1 {
		parts = append(parts, fmt.Sprintf("%d attempts", attempts))
	}
	fill := colourText
	switch s.Outcome {
	case dag.OutcomeOK:
	case dag.OutcomeFailed, dag.OutcomeUndoFailed:
		fill = colourFailed
		word := "✗ " + strings.ReplaceAll(string(s.Outcome), "_", " ")
		if s.Err != nil {
			word += ": " + shorten(oneLine(s.Err.Error()), ganttErrChars)
		}
		parts = append(parts, word)
	default:
		fill = colourMuted
		parts = append(parts, string(s.Outcome))
	}
	return strings.Join(parts, " · "), fill
}

// niceTick returns a tick interval of 1, 2 or 5 times a power of ten such
// that span is covered by at most maxTicks intervals.
func niceTick(span float64, maxTicks int) float64 {
	raw := span / float64(maxTicks)
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// tickLabel prints a tick in seconds when ticks are at least 100 ms apart
// and in milliseconds below, with as many decimals as the interval needs;
// the origin is a bare 0.
func tickLabel(v, step float64) string {
	if v == 0 {
		return "0"
	}
	unit, scale := "s", 1.0
	if step < 0.1 {
		unit, scale = "ms", 1000
	}
	decimals := max(0, int(-math.Floor(math.Log10(step*scale)+1e-9)))
	return strconv.FormatFloat(v*scale, 'f', decimals, 64) + unit
}

// fmtDur prints a duration rounded to the millisecond (to the microsecond
// below one millisecond).
func fmtDur(d time.Duration) string {
	if d != 0 && d < time.Millisecond && d > -time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// esc makes any string safe as XML text or a double-quoted attribute;
// characters XML cannot carry at all become U+FFFD.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// shorten cuts s to n runes, marking the cut with an ellipsis.
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
