package metrics

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/dag"
)

type svgRect struct {
	class, step, fill string
	attempt           int
	x, width, seconds float64
}

type parsedSVG struct {
	rects  []svgRect
	titles []string // text of every <title>
	texts  []string // text of every <text> (excluding nested titles)
	ticks  []string // text of the axis ticks
	root   xml.StartElement
}

// parseSVG reads the whole document with encoding/xml, which fails on
// anything not well-formed, and collects what the tests look at.
func parseSVG(t *testing.T, data []byte) parsedSVG {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var out parsedSVG
	var stack []string
	var text strings.Builder
	var textClass string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "SVG is not well-formed")
		switch el := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				out.root = el.Copy()
			}
			stack = append(stack, el.Name.Local)
			text.Reset()
			if el.Name.Local == "text" {
				textClass = ""
				for _, a := range el.Attr {
					if a.Name.Local == "class" {
						textClass = a.Value
					}
				}
			}
			if el.Name.Local == "rect" {
				r := svgRect{}
				for _, a := range el.Attr {
					switch a.Name.Local {
					case "class":
						r.class = a.Value
					case "data-step":
						r.step = a.Value
					case "fill":
						r.fill = a.Value
					case "data-attempt":
						r.attempt, _ = strconv.Atoi(a.Value)
					case "x":
						r.x, _ = strconv.ParseFloat(a.Value, 64)
					case "width":
						r.width, _ = strconv.ParseFloat(a.Value, 64)
					case "data-duration":
						r.seconds, _ = strconv.ParseFloat(a.Value, 64)
					}
				}
				out.rects = append(out.rects, r)
			}
		case xml.CharData:
			text.Write(el)
		case xml.EndElement:
			switch el.Name.Local {
			case "title":
				out.titles = append(out.titles, text.String())
			case "text":
				out.texts = append(out.texts, text.String())
				if textClass == "tick" {
					out.ticks = append(out.ticks, text.String())
				}
			}
			text.Reset()
			stack = stack[:len(stack)-1]
		}
	}
	require.Empty(t, stack)
	return out
}

func renderGantt(t *testing.T, res *dag.Result, title string) parsedSVG {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteGantt(&buf, res, title))
	return parseSVG(t, buf.Bytes())
}

func TestGanttIsWellFormedAndNamesEveryStep(t *testing.T) {
	for name, res := range map[string]*dag.Result{"ok": launchOK(), "failed": launchFailed()} {
		t.Run(name, func(t *testing.T) {
			svg := renderGantt(t, res, `launch <bottle-7f3a> & "friends"`)
			assert.Equal(t, "svg", svg.root.Name.Local)
			assert.Equal(t, "http://www.w3.org/2000/svg", svg.root.Name.Space)
			for _, s := range res.Steps {
				// xml.EscapeText turns what XML cannot carry (NUL, ESC)
				// into U+FFFD; everything else survives verbatim.
				want := strings.Map(func(r rune) rune {
					if r < 0x20 {
						return '\uFFFD'
					}
					return r
				}, s.ID)
				assert.Contains(t, svg.titles, want, "step %q has a labelled row", s.ID)
			}
			assert.Contains(t, svg.texts, `launch <bottle-7f3a> & "friends"`)
		})
	}
}

func TestGanttBarsAreToScale(t *testing.T) {
	res := launchOK()
	svg := renderGantt(t, res, "launch")
	var bars []svgRect
	for _, r := range svg.rects {
		if strings.Contains(r.class, "bar") {
			bars = append(bars, r)
		}
	}
	// One bar per attempt: seven single-attempt steps and git-gate's two.
	require.Len(t, bars, 9)
	scale := bars[0].width / bars[0].seconds
	require.Greater(t, scale, 0.0)
	var x0 float64
	for _, b := range bars {
		assert.InDelta(t, scale, b.width/b.seconds, 0.01, "%s attempt %d", b.step, b.attempt)
		if b.step == "image" {
			x0 = b.x // image starts at offset 0
		}
	}
	// Start positions are to the same scale.
	starts := map[string]float64{"network": 0, "sidecar:egress": 0.1, "boot": 0.7, "workspace": 1.2}
	for _, b := range bars {
		if want, ok := starts[b.step]; ok {
			assert.InDelta(t, x0+want*scale, b.x, 0.01, b.step)
		}
	}
	// The 1.5 s launch spans the whole plot width, the longest bar
	// (boot, 0.5 s) a third of it.
	for _, b := range bars {
		if b.step == "boot" {
			assert.InDelta(t, 0.5*scale, b.width, 0.01)
		}
	}
}

func TestGanttHighlightsCriticalPathAndRetries(t *testing.T) {
	svg := renderGantt(t, launchOK(), "launch")
	critical := map[string]bool{"network": true, "sidecar:git-gate": true, "boot": true, "workspace": true}
	for _, r := range svg.rects {
		if !strings.Contains(r.class, "attempt") {
			continue
		}
		switch {
		case r.step == "sidecar:git-gate" && r.attempt == 1:
			assert.Equal(t, colourFailed, r.fill, "the failed attempt is marked")
		case critical[r.step]:
			assert.Equal(t, colourCritical, r.fill, r.step)
		default:
			assert.Equal(t, colourStep, r.fill, r.step)
		}
	}
	assert.Contains(t, svg.texts, "critical path", "legend")
	assert.Contains(t, svg.texts, "failed attempt", "legend")
	assert.Contains(t, svg.texts, "600ms · 2 attempts")

	// Heading: wall 1.5 s; the steps add up to 2.5 s; ratio 1.67.
	assert.Contains(t, svg.texts, "wall 1.5s · sum of step durations 2.5s · 1.67× (sum/wall)")
	assert.Contains(t, svg.titles, "launch — wall 1.5s · sum of step durations 2.5s · 1.67× (sum/wall)")

	// Ticks every 200 ms from 0 to 1.4 s.
	assert.Equal(t, []string{"0", "0.2s", "0.4s", "0.6s", "0.8s", "1.0s", "1.2s", "1.4s"}, svg.ticks)
}

func TestGanttMarksFailedCancelledSkippedAndUndone(t *testing.T) {
	svg := renderGantt(t, launchFailed(), "")
	// Notes are cut to fit the chart; their tooltips have them whole.
	for _, note := range []string{
		"600ms · 3 attempts · ✗ failed: egress: exit status 1 stderr: bind: address in use",
		"600ms · cancelled",
		"skipped",
		"100ms · undone",
		"300ms · ✗ undo failed: remove image: in use",
	} {
		assert.Contains(t, svg.titles, note)
		found := false
		for _, txt := range svg.texts {
			prefix, cut := strings.CutSuffix(txt, "…")
			found = found || txt == note || (cut && len(prefix) > 10 && strings.HasPrefix(note, prefix))
		}
		assert.True(t, found, "note %q is shown", note)
	}

	undos := map[string]svgRect{}
	for _, r := range svg.rects {
		if strings.Contains(r.class, "undo") {
			undos[r.step] = r
		}
		if r.step == "sidecar:git-gate" && strings.Contains(r.class, "attempt") {
			assert.Equal(t, colourCancelled, r.fill)
		}
		if r.step == "sidecar:egress" && strings.Contains(r.class, "attempt") {
			assert.Equal(t, colourFailed, r.fill, "every egress attempt failed")
		}
	}
	assert.Len(t, undos, 2)
	assert.InDelta(t, 0.1, undos["image"].seconds, 1e-9)
	assert.Contains(t, svg.titles, "undo image: 100ms: remove image: in use")
}

func TestGanttOfAnEmptyResult(t *testing.T) {
	svg := renderGantt(t, &dag.Result{}, "nothing ran")
	assert.Contains(t, svg.texts, "nothing ran")
}

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		span, want float64
	}{
		{1.5, 0.2},
		{60, 10},
		{61, 10},
		{0.0123, 0.002},
		{10, 1},
		{0.45, 0.05},
		{300, 50},
	} {
		assert.InDelta(t, tc.want, niceTick(tc.span, 10), tc.want*1e-9, "span %g", tc.span)
	}
	assert.Equal(t, "0", tickLabel(0, 0.2))
	assert.Equal(t, "0.4s", tickLabel(0.4, 0.2))
	assert.Equal(t, "1.5ms", tickLabel(0.0015, 0.0005))
	assert.Equal(t, "50ms", tickLabel(0.05, 0.05))
	assert.Equal(t, "10s", tickLabel(10, 10))
	assert.Equal(t, "2.5s", tickLabel(2.5, 0.5))
	assert.Equal(t, "0.25ms", tickLabel(0.00025, 0.00005))
}
