package supervise

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

// Request is one queued ask from the agent.
type Request struct {
	ID          string    `json:"id"`
	Slug        string    `json:"slug"`
	Kind        string    `json:"kind"`
	Host        string    `json:"host,omitempty"`
	TokenEnv    string    `json:"token_env,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Deadline is when the waiting tool call gives up; a request past it
	// can no longer be decided.
	Deadline time.Time `json:"deadline"`
}

// Decision is the human's answer, written by the host.
type Decision struct {
	ID       string    `json:"id"`
	Approved bool      `json:"approved"`
	Reason   string    `json:"reason,omitempty"`
	Message  string    `json:"message"`
	Decided  time.Time `json:"decided"`
}

// Statuses reported by ListRequests and the tools.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusDenied   = "denied"
	StatusExpired  = "expired"
)

// Entry is a request with its current status.
type Entry struct {
	Request
	Status   string    `json:"status"`
	Decision *Decision `json:"decision,omitempty"`
}

// Errors callers test for.
var (
	ErrNotFound       = errors.New("supervise: no such request")
	ErrAlreadyDecided = errors.New("supervise: request already decided")
	ErrExpired        = errors.New("supervise: request expired; the agent stopped waiting and can ask again")
)

var idPattern = regexp.MustCompile(`^[a-z2-7]{8}$`)

// ValidID reports whether id has the shape newID produces, so an id from
// the command line can never name a path outside the queue.
func ValidID(id string) bool { return idPattern.MatchString(id) }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newID() (string, error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(idEncoding.EncodeToString(b)), nil
}

func requestPath(queueDir, id string) string  { return filepath.Join(queueDir, id+".json") }
func decisionPath(queueDir, id string) string { return filepath.Join(queueDir, id+".decision.json") }

// createRequest stores r under a fresh id, exclusively.
func createRequest(queueDir string, r *Request) error {
	if err := os.MkdirAll(queueDir, 0o700); err != nil {
		return err
	}
	for range 5 {
		id, err := newID()
		if err != nil {
			return err
		}
		r.ID = id
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		err = writeExclusive(requestPath(queueDir, id), b)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return err
	}
	return errors.New("supervise: could not allocate a request id")
}

// writeExclusive writes a complete file at path, failing with ErrExist if
// one is already there: a temp file is linked into place, so readers
// never see a partial file and two writers cannot both win.
func writeExclusive(path string, data []byte) error {
	tmp := path + ".tmp-" + fmt.Sprint(time.Now().UnixNano())
	if err := atomicfile.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return os.ErrExist
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func readDecision(queueDir, id string) (*Decision, error) {
	var d Decision
	if err := readJSON(decisionPath(queueDir, id), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func entryFor(queueDir string, r Request, now time.Time) Entry {
	e := Entry{Request: r, Status: StatusPending}
	if d, err := readDecision(queueDir, r.ID); err == nil {
		e.Decision = d
		if d.Approved {
			e.Status = StatusApproved
		} else {
			e.Status = StatusDenied
		}
	} else if now.After(r.Deadline) {
		e.Status = StatusExpired
	}
	return e
}

// ListRequests returns every request in queueDir with its status, oldest
// first. A missing queue dir is an empty list.
func ListRequests(queueDir string) ([]Entry, error) {
	names, err := os.ReadDir(queueDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []Entry
	for _, n := range names {
		id, ok := strings.CutSuffix(n.Name(), ".json")
		if !ok || !ValidID(id) {
			continue
		}
		var r Request
		if err := readJSON(filepath.Join(queueDir, n.Name()), &r); err != nil || r.ID != id {
			continue
		}
		out = append(out, entryFor(queueDir, r, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// FindRequest searches every bottle's state dir under root for id and
// returns that bottle's state dir. IDs are random across bottles, so the
// human needs only the id.
func FindRequest(root, id string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("%w: %q is not a request id", ErrNotFound, id)
	}
	dirs, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		sd := filepath.Join(root, d.Name())
		if _, err := os.Stat(requestPath(filepath.Join(sd, statedir.SuperviseQueue), id)); err == nil {
			return sd, nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNotFound, id)
}

// ApproveOption adjusts Approve.
type ApproveOption func(*approveOpts)

type approveOpts struct {
	reload func(Request) error
	now    func() time.Time
}

// WithReload is called after an approval has changed the current-config
// dir and before the decision is written, so the agent's call returns only
// once the egress sidecar has been told (e.g. sent SIGHUP). Its error is
// reported but does not undo the approval: egress also polls the file.
func WithReload(f func(Request) error) ApproveOption {
	return func(o *approveOpts) { o.reload = f }
}

func pending(stateDir, id string, now time.Time) (string, Request, error) {
	var r Request
	if !ValidID(id) {
		return "", r, fmt.Errorf("%w: %q is not a request id", ErrNotFound, id)
	}
	q := filepath.Join(stateDir, statedir.SuperviseQueue)
	if err := readJSON(requestPath(q, id), &r); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", r, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return "", r, err
	}
	if _, err := os.Stat(decisionPath(q, id)); err == nil {
		return "", r, fmt.Errorf("%w: %s", ErrAlreadyDecided, id)
	}
	if now.After(r.Deadline) {
		return "", r, fmt.Errorf("%w (%s)", ErrExpired, id)
	}
	return q, r, nil
}

// Approve grants request id of the bottle whose state dir is stateDir.
// An egress request adds its host to the dynamic allow file; a route
// request is recorded for the next launch; a change request is recorded
// for the human to act on. The returned decision's message is what the
// agent reads.
func Approve(stateDir, id string, opts ...ApproveOption) (Decision, error) {
	o := approveOpts{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	q, r, err := pending(stateDir, id, o.now())
	if err != nil {
		return Decision{}, err
	}
	cur := filepath.Join(stateDir, statedir.CurrentConfigDir)
	d := Decision{ID: id, Approved: true, Decided: o.now().UTC()}
	var reloadErr error
	switch r.Kind {
	case KindEgress:
		if err := addDynamicHost(cur, r.Host); err != nil {
			return Decision{}, err
		}
		if o.reload != nil {
			reloadErr = o.reload(r)
		}
		d.Message = fmt.Sprintf("approved: %s is now allowed through the egress proxy (it may take up to a few seconds to apply)", r.Host)
	case KindRoute:
		if err := appendRecord(cur, ApprovedRoutesFile, map[string]any{
			"id": id, "host": r.Host, "token_env": r.TokenEnv, "approved": d.Decided,
		}); err != nil {
			return Decision{}, err
		}
		d.Message = fmt.Sprintf("approved and recorded: the route to %s with the token from $%s takes effect when the bottle is next launched (the token's value is read from the human's environment then); until then requests to %s are refused", r.Host, r.TokenEnv, r.Host)
	case KindChange:
		if err := appendRecord(cur, ApprovedChangesFile, map[string]any{
			"id": id, "description": r.Description, "approved": d.Decided,
		}); err != nil {
			return Decision{}, err
		}
		d.Message = "approved: the human will make this change; call get_config later to see it"
	default:
		return Decision{}, fmt.Errorf("supervise: request %s has unknown kind %q", id, r.Kind)
	}
	if err := writeDecision(q, d); err != nil {
		return Decision{}, err
	}
	if reloadErr != nil {
		return d, fmt.Errorf("approved, but telling egress to reload failed (it will still pick the change up by polling): %w", reloadErr)
	}
	return d, nil
}

// Deny refuses request id with a reason the agent will read.
func Deny(stateDir, id, reason string) (Decision, error) {
	q, _, err := pending(stateDir, id, time.Now())
	if err != nil {
		return Decision{}, err
	}
	reason = strings.TrimSpace(reason)
	d := Decision{ID: id, Approved: false, Reason: reason, Decided: time.Now().UTC(), Message: "denied by the human"}
	if reason != "" {
		d.Message += ": " + reason
	}
	return d, writeDecision(q, d)
}

func writeDecision(queueDir string, d Decision) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := writeExclusive(decisionPath(queueDir, d.ID), b); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrAlreadyDecided, d.ID)
		}
		return err
	}
	return nil
}

// withLock serializes read-modify-write cycles on files in dir between
// concurrent `bottle supervise approve` runs.
func withLock(dir string, f func() error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()
	return f()
}

func addDynamicHost(curDir, host string) error {
	return withLock(curDir, func() error {
		p := filepath.Join(curDir, DynamicAllowFile)
		hosts, err := egress.ReadDynamicAllow(p)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h == host {
				return nil
			}
		}
		return egress.WriteDynamicAllow(p, append(hosts, host))
	})
}

func appendRecord(curDir, name string, rec map[string]any) error {
	return withLock(curDir, func() error {
		p := filepath.Join(curDir, name)
		var recs []map[string]any
		if err := readJSON(p, &recs); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		recs = append(recs, rec)
		b, err := json.MarshalIndent(recs, "", "  ")
		if err != nil {
			return err
		}
		return atomicfile.WriteFile(p, append(b, '\n'), 0o644)
	})
}
