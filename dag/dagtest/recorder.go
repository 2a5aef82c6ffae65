package dagtest

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bot-bottle/bot-bottle/dag"
)

// EntryKind names what a FakeStep did.
type EntryKind string

const (
	KindStart      EntryKind = "start"  // an attempt began
	KindFinish     EntryKind = "finish" // an attempt returned
	KindUndoStart  EntryKind = "undo_start"
	KindUndoFinish EntryKind = "undo_finish"
)

// Entry is one thing a FakeStep did.
type Entry struct {
	// Seq orders entries totally: an entry with a smaller Seq happened
	// before (the recorder's lock orders them).
	Seq     int
	Kind    EntryKind
	Step    string
	Attempt int
	Time    time.Time
	Err     error
	// CtxErr is the context's error when an undo started or finished: an
	// undo must run under a live context even after Ctrl-C.
	CtxErr error
}

// Recorder collects what FakeSteps did and tracks how many ran at once. A
// nil *Recorder records nothing. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	entries []Entry

	running, maxRunning         atomic.Int32
	undoRunning, maxUndoRunning atomic.Int32
}

func (r *Recorder) record(kind EntryKind, step string, attempt int, err error) {
	if r == nil {
		return
	}
	if kind == KindStart {
		raiseMax(&r.maxRunning, r.running.Add(1))
	}
	r.append(Entry{Kind: kind, Step: step, Attempt: attempt, Err: err})
	if kind == KindFinish {
		r.running.Add(-1)
	}
}

func (r *Recorder) recordUndo(kind EntryKind, step string, ctx context.Context, err error) {
	if r == nil {
		return
	}
	if kind == KindUndoStart {
		raiseMax(&r.maxUndoRunning, r.undoRunning.Add(1))
	}
	r.append(Entry{Kind: kind, Step: step, Err: err, CtxErr: ctx.Err()})
	if kind == KindUndoFinish {
		r.undoRunning.Add(-1)
	}
}

func (r *Recorder) append(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Seq = len(r.entries)
	e.Time = time.Now()
	r.entries = append(r.entries, e)
}

func raiseMax(max *atomic.Int32, v int32) {
	for {
		m := max.Load()
		if v <= m || max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Entries returns everything recorded, in order.
func (r *Recorder) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// Order returns the steps of the entries of the given kind, in order.
func (r *Recorder) Order(kind EntryKind) []string {
	var ids []string
	for _, e := range r.Entries() {
		if e.Kind == kind {
			ids = append(ids, e.Step)
		}
	}
	return ids
}

// First returns the first entry of the given kind for step.
func (r *Recorder) First(kind EntryKind, step string) (Entry, bool) {
	for _, e := range r.Entries() {
		if e.Kind == kind && e.Step == step {
			return e, true
		}
	}
	return Entry{}, false
}

// Last returns the last entry of the given kind for step.
func (r *Recorder) Last(kind EntryKind, step string) (Entry, bool) {
	entries := r.Entries()
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; e.Kind == kind && e.Step == step {
			return e, true
		}
	}
	return Entry{}, false
}

// MaxConcurrent returns the largest number of attempts that were running
// at the same moment.
func (r *Recorder) MaxConcurrent() int { return int(r.maxRunning.Load()) }

// MaxConcurrentUndos returns the largest number of undos that were running
// at the same moment.
func (r *Recorder) MaxConcurrentUndos() int { return int(r.maxUndoRunning.Load()) }

// EventLog is a dag.Observer that keeps every event. It is safe for
// concurrent use.
type EventLog struct {
	mu     sync.Mutex
	events []dag.Event
}

var _ dag.Observer = (*EventLog)(nil)

func (l *EventLog) OnEvent(e dag.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// Events returns the events received, in order.
func (l *EventLog) Events() []dag.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// Kinds returns the kinds of the events received for step, in order.
func (l *EventLog) Kinds(step string) []dag.EventKind {
	var kinds []dag.EventKind
	for _, e := range l.Events() {
		if e.Step == step {
			kinds = append(kinds, e.Kind)
		}
	}
	return kinds
}

// Of returns the events of the given kind for step, in order.
func (l *EventLog) Of(kind dag.EventKind, step string) []dag.Event {
	var out []dag.Event
	for _, e := range l.Events() {
		if e.Kind == kind && e.Step == step {
			out = append(out, e)
		}
	}
	return out
}
