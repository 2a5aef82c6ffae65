// Command timeline prints a launch's timings JSON (bottle launch
// --timings) as a text timeline: one row per step in start order, a bar to
// scale, and the critical path marked.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type timings struct {
	Slug         string   `json:"slug"`
	Wall         float64  `json:"wall_seconds"`
	CriticalPath []string `json:"critical_path"`
	CriticalSecs float64  `json:"critical_path_seconds"`
	Steps        []struct {
		ID       string  `json:"id"`
		Start    float64 `json:"start_offset_seconds"`
		Duration float64 `json:"duration_seconds"`
		Attempts int     `json:"attempts"`
		Outcome  string  `json:"outcome"`
	} `json:"steps"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: timeline TIMINGS.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var t timings
	if err := json.Unmarshal(b, &t); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	critical := map[string]bool{}
	for _, id := range t.CriticalPath {
		critical[id] = true
	}
	sort.SliceStable(t.Steps, func(i, j int) bool { return t.Steps[i].Start < t.Steps[j].Start })
	const width = 50
	scale := float64(width) / max(t.Wall, 1e-9)
	sum := 0.0
	for _, s := range t.Steps {
		sum += s.Duration
		from := int(s.Start * scale)
		n := max(1, int(s.Duration*scale))
		mark := " "
		if critical[s.ID] {
			mark = "*"
		}
		fmt.Printf("%s %-18s %7.3fs |%s%s%s| %s", mark, s.ID, s.Duration,
			strings.Repeat(" ", min(from, width)), strings.Repeat("#", min(n, width-min(from, width))),
			strings.Repeat(" ", max(0, width-from-n)), s.Outcome)
		if s.Attempts > 1 {
			fmt.Printf(" (%d attempts)", s.Attempts)
		}
		fmt.Println()
	}
	fmt.Printf("wall %.3fs, critical path %.3fs (*), sum of steps %.3fs: %.2fx from running steps concurrently\n",
		t.Wall, t.CriticalSecs, sum, sum/max(t.Wall, 1e-9))
}
