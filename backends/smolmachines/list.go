package smolmachines

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/bot-bottle/bot-bottle/backends"
)

// Machine states smolvm reports.
const (
	StateCreated     = "created"
	StateRunning     = "running"
	StateStopped     = "stopped"
	StateFailed      = "failed"
	StateUnreachable = "unreachable"
)

// MachineInfo is one machine as `smolvm machine ls|status --json` reports
// it.
type MachineInfo struct {
	Name string `json:"name"`
	// State is lower-case (see the State constants); empty when smolvm
	// did not say.
	State string `json:"state"`
	// PID is the VM process, 0 when not running or not reported.
	PID   int    `json:"pid"`
	Image string `json:"image"`
	// Labels is nil when the machine has none.
	Labels backends.Labels `json:"labels"`
}

// ParseList parses the output of `smolvm machine ls --json`. smolvm's JSON
// has varied between releases, so the parser accepts: a JSON array of
// machine objects, an object wrapping that array under "machines", a single
// machine object, or a sequence of any of these (one per line); empty output
// and null are an empty list (nil). Keys are matched case-insensitively and unknown keys are
// ignored. "pid" may be a number, a numeric string or null; "labels" an
// object (non-string values are rendered as JSON text), a list of "K=V"
// strings or null. Every machine must have a non-empty string "name".
func ParseList(data []byte) ([]MachineInfo, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out []MachineInfo
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse smolvm machine list: %w", err)
		}
		infos, err := parseListValue(v)
		if err != nil {
			return nil, fmt.Errorf("parse smolvm machine list: %w", err)
		}
		out = append(out, infos...)
	}
}

// ParseStatus parses the output of `smolvm machine status --json`: the
// same shapes as ParseList, holding exactly one machine.
func ParseStatus(data []byte) (MachineInfo, error) {
	infos, err := ParseList(data)
	if err != nil {
		return MachineInfo{}, err
	}
	if len(infos) != 1 {
		return MachineInfo{}, fmt.Errorf("parse smolvm machine status: want one machine, got %d", len(infos))
	}
	return infos[0], nil
}

func parseListValue(v any) ([]MachineInfo, error) {
	switch v := v.(type) {
	case nil:
		// "null" is how a Go or serde serializer writes an empty list.
		return nil, nil
	case []any:
		out := make([]MachineInfo, 0, len(v))
		for i, e := range v {
			obj, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("entry %d: want an object, got %s", i, jsonKind(e))
			}
			info, err := parseMachine(obj)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", i, err)
			}
			out = append(out, info)
		}
		return out, nil
	case map[string]any:
		fields := foldKeys(v)
		if inner, ok := fields["machines"]; ok {
			if _, hasName := fields["name"]; !hasName {
				return parseListValue(inner)
			}
		}
		info, err := parseMachine(v)
		if err != nil {
			return nil, err
		}
		return []MachineInfo{info}, nil
	default:
		return nil, fmt.Errorf("want an array or object, got %s", jsonKind(v))
	}
}

func parseMachine(obj map[string]any) (MachineInfo, error) {
	f := foldKeys(obj)
	name, ok := f["name"].(string)
	if !ok || name == "" {
		return MachineInfo{}, errors.New(`machine without a string "name"`)
	}
	info := MachineInfo{Name: name}
	if s, ok := f["state"].(string); ok {
		info.State = strings.ToLower(strings.TrimSpace(s))
	}
	info.PID = parsePID(f["pid"])
	if s, ok := f["image"].(string); ok {
		info.Image = s
	}
	labels, err := parseLabels(f["labels"])
	if err != nil {
		return MachineInfo{}, fmt.Errorf("machine %q: %w", name, err)
	}
	info.Labels = labels
	return info, nil
}

// parsePID is lenient: the pid is informational, so an unreadable one is 0
// rather than a reason to reject the whole listing.
func parsePID(v any) int {
	var n json.Number
	switch v := v.(type) {
	case json.Number:
		n = v
	case string:
		n = json.Number(strings.TrimSpace(v))
	default:
		return 0
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil && i > 0 && i <= math.MaxInt32 {
		return int(i)
	}
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && f > 0 && f <= math.MaxInt32 {
		return int(f)
	}
	return 0
}

func parseLabels(v any) (backends.Labels, error) {
	labels := backends.Labels{}
	switch v := v.(type) {
	case nil:
	case map[string]any:
		for k, val := range v {
			switch val := val.(type) {
			case string:
				labels[k] = val
			case nil:
				labels[k] = ""
			default:
				b, err := json.Marshal(val)
				if err != nil {
					return nil, fmt.Errorf("label %q: %w", k, err)
				}
				labels[k] = string(b)
			}
		}
	case []any:
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("label %d: want a \"K=V\" string, got %s", i, jsonKind(e))
			}
			k, val, _ := strings.Cut(s, "=")
			labels[k] = val
		}
	default:
		return nil, fmt.Errorf("labels: want an object or list, got %s", jsonKind(v))
	}
	if len(labels) == 0 {
		return nil, nil
	}
	return labels, nil
}

// foldKeys lower-cases an object's keys. When several keys fold to the
// same one, the exact lower-case spelling wins, else the smallest spelling,
// so the choice never depends on map order.
func foldKeys(obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	from := make(map[string]string, len(obj))
	for k, v := range obj {
		lk := strings.ToLower(k)
		if prev, taken := from[lk]; taken && (prev == lk || (k != lk && prev < k)) {
			continue
		}
		out[lk], from[lk] = v, k
	}
	return out
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
