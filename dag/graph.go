package dag

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/dominikbraun/graph"
	"github.com/dominikbraun/graph/draw"
)

// Graph is a validated, acyclic set of steps. It is immutable after New and
// safe for concurrent use: every Execute call runs the steps anew with its
// own state.
type Graph struct {
	// steps is in topological order: a step's index is greater than the
	// index of every one of its dependencies. All adjacency below is by index
	// into steps, so Execute never touches a map or the graph library.
	steps      []Step
	ids        []string // ids[i] is steps[i].ID(), read once by New
	index      map[string]int32
	deps       [][]int32 // deps[i]: indices of the steps i depends on
	dependents [][]int32 // dependents[i]: indices of the steps depending on i
	depIDs     [][]string
	// byID lists step indices sorted by ID, for reporting never-started
	// steps in a stable order.
	byID []int32
}

// GraphErrorKind classifies why New rejected a set of steps.
type GraphErrorKind string

const (
	GraphErrNilStep             GraphErrorKind = "nil_step"
	GraphErrEmptyID             GraphErrorKind = "empty_id"
	GraphErrInvalidID           GraphErrorKind = "invalid_id"
	GraphErrDuplicateID         GraphErrorKind = "duplicate_id"
	GraphErrDuplicateDependency GraphErrorKind = "duplicate_dependency"
	GraphErrUnknownDependency   GraphErrorKind = "unknown_dependency"
	GraphErrCycle               GraphErrorKind = "cycle"
)

// GraphError says why New rejected a set of steps. Steps names the steps
// concerned:
//   - cycle: the steps on the cycle, each one a dependency of the next and the
//     last a dependency of the first;
//   - unknown_dependency and duplicate_dependency: the step, then the
//     dependency it names;
//   - duplicate_id and invalid_id: the offending ID;
//   - nil_step and empty_id: nothing (Index says which argument).
type GraphError struct {
	Kind GraphErrorKind
	// Steps are the step IDs involved, as described above.
	Steps []string
	// Index is the position of the offending step among New's arguments.
	Index int
}

func (e *GraphError) Error() string {
	switch e.Kind {
	case GraphErrNilStep:
		return fmt.Sprintf("dag: step #%d is nil", e.Index)
	case GraphErrEmptyID:
		return fmt.Sprintf("dag: step #%d has an empty ID; every step needs a unique, stable ID", e.Index)
	case GraphErrInvalidID:
		return fmt.Sprintf("dag: step #%d has ID %q with a quote, backslash or control character; use plain names such as \"start_egress\"", e.Index, e.Steps[0])
	case GraphErrDuplicateID:
		return fmt.Sprintf("dag: step ID %q is used by more than one step (again at #%d); step IDs must be unique", e.Steps[0], e.Index)
	case GraphErrDuplicateDependency:
		return fmt.Sprintf("dag: step %q lists dependency %q more than once", e.Steps[0], e.Steps[1])
	case GraphErrUnknownDependency:
		return fmt.Sprintf("dag: step %q depends on %q, which is not a step of this graph; add that step or drop the dependency", e.Steps[0], e.Steps[1])
	case GraphErrCycle:
		quoted := make([]string, 0, len(e.Steps)+1)
		for _, id := range e.Steps {
			quoted = append(quoted, fmt.Sprintf("%q", id))
		}
		quoted = append(quoted, fmt.Sprintf("%q", e.Steps[0]))
		return fmt.Sprintf("dag: dependency cycle %s (each step must finish before the next starts, so none can start); remove one of these dependencies", strings.Join(quoted, " -> "))
	}
	return fmt.Sprintf("dag: invalid graph (%s): %v", e.Kind, e.Steps)
}

// New validates steps and builds their graph. It rejects, before anything
// runs, a nil step, an empty or unprintable ID, a duplicate ID, a dependency
// listed twice, a dependency on an unknown step and a dependency cycle; the
// error is a *GraphError naming the steps concerned.
func New(steps ...Step) (*Graph, error) {
	n := len(steps)
	g := &Graph{index: make(map[string]int32, n)}

	ids := make([]string, n)
	for i, s := range steps {
		if s == nil {
			return nil, &GraphError{Kind: GraphErrNilStep, Index: i}
		}
		id := s.ID()
		if id == "" {
			return nil, &GraphError{Kind: GraphErrEmptyID, Index: i}
		}
		if !printableID(id) {
			return nil, &GraphError{Kind: GraphErrInvalidID, Steps: []string{id}, Index: i}
		}
		if _, dup := g.index[id]; dup {
			return nil, &GraphError{Kind: GraphErrDuplicateID, Steps: []string{id}, Index: i}
		}
		g.index[id] = int32(i)
		ids[i] = id
	}

	// Dependencies by declaration index; cloned so that a step which later
	// mutates the slice it returned cannot change the validated graph.
	declDeps := make([][]int32, n)
	declDepIDs := make([][]string, n)
	for i, s := range steps {
		depIDs := slices.Clone(s.Deps())
		declDepIDs[i] = depIDs
		seen := make(map[string]struct{}, len(depIDs))
		for _, dep := range depIDs {
			if _, twice := seen[dep]; twice {
				return nil, &GraphError{Kind: GraphErrDuplicateDependency, Steps: []string{ids[i], dep}, Index: i}
			}
			seen[dep] = struct{}{}
			j, ok := g.index[dep]
			if !ok {
				return nil, &GraphError{Kind: GraphErrUnknownDependency, Steps: []string{ids[i], dep}, Index: i}
			}
			declDeps[i] = append(declDeps[i], j)
		}
	}

	order := topologicalOrder(declDeps)
	// The library graph is the authority on acyclicity. It is not kept: its
	// per-edge maps would make a large graph several times heavier for the
	// garbage collector, and DOT rebuilds it in linear time.
	if _, err := buildLibraryGraph(ids, declDeps, order); err != nil {
		return nil, err
	}
	if len(order) != n {
		// buildLibraryGraph rejects every cycle; reaching here would mean the
		// two disagree.
		return nil, errors.New("dag: internal error: topological order incomplete but no cycle found")
	}

	// Renumber everything into topological order.
	pos := make([]int32, n) // declaration index -> topological index
	for t, decl := range order {
		pos[decl] = int32(t)
	}
	g.steps = make([]Step, n)
	g.ids = make([]string, n)
	g.depIDs = make([][]string, n)
	for t, decl := range order {
		g.steps[t] = steps[decl]
		g.ids[t] = ids[decl]
		g.index[ids[decl]] = int32(t)
		g.depIDs[t] = declDepIDs[decl]
	}
	// Each adjacency list is a window on one shared array, in step order,
	// so the executor's walks over them stay in cache.
	edges := 0
	for _, ds := range declDeps {
		edges += len(ds)
	}
	depStore := make([]int32, 0, edges)
	g.deps = make([][]int32, n)
	dependentCount := make([]int, n)
	for t, decl := range order {
		from := len(depStore)
		for _, d := range declDeps[decl] {
			depStore = append(depStore, pos[d])
			dependentCount[pos[d]]++
		}
		g.deps[t] = depStore[from:len(depStore):len(depStore)]
	}
	dependentStore := make([]int32, edges)
	g.dependents = make([][]int32, n)
	next := 0
	for t := range n {
		g.dependents[t] = dependentStore[next : next : next+dependentCount[t]]
		next += dependentCount[t]
	}
	for t := range n {
		for _, d := range g.deps[t] {
			g.dependents[d] = append(g.dependents[d], int32(t))
		}
	}
	g.byID = make([]int32, n)
	for i := range g.byID {
		g.byID[i] = int32(i)
	}
	slices.SortFunc(g.byID, func(a, b int32) int { return strings.Compare(g.ids[a], g.ids[b]) })
	return g, nil
}

// printableID reports whether id can be embedded in DOT, metric labels and
// messages without quoting trouble.
func printableID(id string) bool {
	for _, r := range id {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

// topologicalOrder runs Kahn's algorithm over declaration indices, always
// taking the earliest-declared ready step next, so the order is
// deterministic and as close to the declaration order as the dependencies
// allow. Steps on or behind a cycle are left out.
func topologicalOrder(deps [][]int32) []int32 {
	n := len(deps)
	indeg := make([]int32, n)
	dependents := make([][]int32, n)
	for i, ds := range deps {
		indeg[i] = int32(len(ds))
		for _, d := range ds {
			dependents[d] = append(dependents[d], int32(i))
		}
	}
	ready := &indexHeap{}
	for i := range n {
		if indeg[i] == 0 {
			ready.items = append(ready.items, int32(i))
		}
	}
	order := make([]int32, 0, n)
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int32)
		order = append(order, i)
		for _, d := range dependents[i] {
			indeg[d]--
			if indeg[d] == 0 {
				heap.Push(ready, d)
			}
		}
	}
	return order
}

type indexHeap struct{ items []int32 }

func (h *indexHeap) Len() int           { return len(h.items) }
func (h *indexHeap) Less(a, b int) bool { return h.items[a] < h.items[b] }
func (h *indexHeap) Swap(a, b int)      { h.items[a], h.items[b] = h.items[b], h.items[a] }
func (h *indexHeap) Push(x any)         { h.items = append(h.items, x.(int32)) }
func (h *indexHeap) Pop() any {
	last := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return last
}

// buildLibraryGraph builds the directed graph (edge dependency -> dependent)
// with cycle prevention, which is the authority on acyclicity. Edges leaving
// steps in the (partial) topological order are added last-step-first: when
// edge u -> v is added, none of u's incoming edges exist yet, so the
// library's cycle check (a walk over u's ancestors) is constant-time and a
// large graph builds in linear time. Edges among the steps left out of the
// order (those on or behind a cycle) follow in declaration order; the first
// one that closes a cycle is reported with the cycle it closes.
func buildLibraryGraph(ids []string, deps [][]int32, order []int32) (graph.Graph[string, string], error) {
	lib := graph.New(graph.StringHash, graph.Directed(), graph.PreventCycles())
	for _, id := range ids {
		if err := lib.AddVertex(id); err != nil {
			return nil, fmt.Errorf("dag: add step %q to graph: %w", id, err)
		}
	}
	dependents := make([][]int32, len(ids))
	for i, ds := range deps {
		for _, d := range ds {
			dependents[d] = append(dependents[d], int32(i))
		}
	}
	addEdge := func(dep, step int32) error {
		err := lib.AddEdge(ids[dep], ids[step])
		if errors.Is(err, graph.ErrEdgeCreatesCycle) {
			return &GraphError{Kind: GraphErrCycle, Steps: cycleThrough(lib, ids[dep], ids[step]), Index: int(step)}
		}
		if err != nil {
			return fmt.Errorf("dag: add dependency %q -> %q: %w", ids[dep], ids[step], err)
		}
		return nil
	}
	inOrder := make([]bool, len(ids))
	for _, i := range order {
		inOrder[i] = true
	}
	for k := len(order) - 1; k >= 0; k-- {
		u := order[k]
		for _, v := range dependents[u] {
			if err := addEdge(u, v); err != nil {
				return nil, err
			}
		}
	}
	for i := range ids {
		if inOrder[i] {
			continue
		}
		for _, d := range deps[i] {
			if inOrder[d] {
				continue // already added above, as an edge leaving an ordered step
			}
			if err := addEdge(d, int32(i)); err != nil {
				return nil, err
			}
		}
	}
	return lib, nil
}

// cycleThrough returns the cycle that the edge dep -> step would close: dep,
// step, then the shortest existing path from step back to dep (exclusive).
func cycleThrough(lib graph.Graph[string, string], dep, step string) []string {
	if dep == step {
		return []string{step}
	}
	adjacency, err := lib.AdjacencyMap()
	if err != nil {
		return []string{dep, step}
	}
	// Breadth-first search from step to dep, neighbours in sorted order so
	// the reported cycle is deterministic.
	parent := map[string]string{step: ""}
	queue := []string{step}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == dep {
			break
		}
		next := make([]string, 0, len(adjacency[cur]))
		for v := range adjacency[cur] {
			next = append(next, v)
		}
		slices.Sort(next)
		for _, v := range next {
			if _, seen := parent[v]; !seen {
				parent[v] = cur
				queue = append(queue, v)
			}
		}
	}
	if _, found := parent[dep]; !found {
		return []string{dep, step}
	}
	var back []string // dep, ..., step (walking parents from dep)
	for cur := dep; cur != ""; cur = parent[cur] {
		back = append(back, cur)
	}
	slices.Reverse(back) // step, ..., dep
	// Rotate so the cycle reads dep -> step -> ... in dependency order.
	return append([]string{dep}, back[:len(back)-1]...)
}

// Len returns the number of steps.
func (g *Graph) Len() int { return len(g.steps) }

// Steps returns the steps in a deterministic topological order: every step
// follows all of its dependencies and, among the steps that could come next,
// the one passed to New earliest comes first.
func (g *Graph) Steps() []Step { return slices.Clone(g.steps) }

// Step returns the step with the given ID.
func (g *Graph) Step(id string) (Step, bool) {
	i, ok := g.index[id]
	if !ok {
		return nil, false
	}
	return g.steps[i], true
}

// DOT writes the graph in Graphviz DOT language, one edge per dependency
// pointing from the dependency to its dependent. The statements are sorted
// into topological order so the output is stable enough for golden tests.
func (g *Graph) DOT(w io.Writer) error {
	identity := make([]int32, len(g.steps)) // g.steps is already in topological order
	for i := range identity {
		identity[i] = int32(i)
	}
	lib, err := buildLibraryGraph(g.ids, g.deps, identity)
	if err != nil {
		return fmt.Errorf("dag: build graph for DOT: %w", err)
	}
	var buf bytes.Buffer
	if err := draw.DOT(lib, &buf); err != nil {
		return fmt.Errorf("dag: render DOT: %w", err)
	}
	_, err = w.Write(g.sortDOTStatements(buf.Bytes()))
	return err
}

// sortDOTStatements reorders the statement lines of the library's output
// (which follow Go's random map order) by topological position: each node
// statement, then its outgoing edges by target position.
func (g *Graph) sortDOTStatements(dot []byte) []byte {
	lines := strings.Split(string(dot), "\n")
	type stmt struct {
		line           string
		source, target int32 // target -1 for a node statement
	}
	var slots []int
	var stmts []stmt
	for i, line := range lines {
		source, target, ok := g.parseDOTStatement(line)
		if !ok {
			continue
		}
		slots = append(slots, i)
		stmts = append(stmts, stmt{line: line, source: source, target: target})
	}
	slices.SortStableFunc(stmts, func(a, b stmt) int {
		if a.source != b.source {
			return int(a.source - b.source)
		}
		return int(a.target - b.target)
	})
	for k, slot := range slots {
		lines[slot] = stmts[k].line
	}
	return []byte(strings.Join(lines, "\n"))
}

// parseDOTStatement recognises `"a" [...]` and `"a" -> "b" [...]`. IDs are
// validated by New to contain no quotes, so the first quoted strings are
// the IDs.
func (g *Graph) parseDOTStatement(line string) (source, target int32, ok bool) {
	rest := strings.TrimLeft(line, " \t")
	srcID, rest, ok := cutQuoted(rest)
	if !ok {
		return 0, 0, false
	}
	source, ok = g.index[srcID]
	if !ok {
		return 0, 0, false
	}
	rest = strings.TrimLeft(rest, " ")
	after, isEdge := strings.CutPrefix(rest, "->")
	if !isEdge {
		return source, -1, true
	}
	tgtID, _, ok := cutQuoted(strings.TrimLeft(after, " "))
	if !ok {
		return 0, 0, false
	}
	target, ok = g.index[tgtID]
	return source, target, ok
}

func cutQuoted(s string) (inner, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	return s[1 : 1+end], s[2+end:], true
}

// CriticalPath returns the longest chain of dependencies in g, weighting
// each step by its duration, first step first, and the chain's total. Only
// steps present in durations take part (in a result: the steps that ran); a
// chain never passes through an absent step. Ties go to the step earliest in
// g.Steps() order. An empty map yields (nil, 0).
func CriticalPath(g *Graph, durations map[string]time.Duration) ([]string, time.Duration) {
	n := len(g.steps)
	weight := make([]time.Duration, n)
	present := make([]bool, n)
	for i, id := range g.ids {
		weight[i], present[i] = durations[id]
	}
	return g.criticalPath(weight, present)
}

// criticalPath is CriticalPath over indices; it relies on steps being in
// topological order so one forward pass suffices.
func (g *Graph) criticalPath(weight []time.Duration, present []bool) ([]string, time.Duration) {
	n := len(g.steps)
	total := make([]time.Duration, n)
	prev := make([]int32, n)
	best := int32(-1)
	for i := range n {
		prev[i] = -1
		if !present[i] {
			continue
		}
		var longest time.Duration
		for _, d := range g.deps[i] {
			if !present[d] {
				continue
			}
			if prev[i] < 0 || total[d] > longest || (total[d] == longest && d < prev[i]) {
				longest, prev[i] = total[d], d
			}
		}
		total[i] = longest + weight[i]
		if best < 0 || total[i] > total[best] {
			best = int32(i)
		}
	}
	if best < 0 {
		return nil, 0
	}
	var path []string
	for i := best; i >= 0; i = prev[i] {
		path = append(path, g.ids[i])
	}
	slices.Reverse(path)
	return path, total[best]
}
