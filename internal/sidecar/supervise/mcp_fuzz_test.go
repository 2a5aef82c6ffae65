package supervise

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

var fuzzTools = []string{"request_egress", "request_route", "request_change", "get_config", "no_such_tool"}

// FuzzMCPToolCall sends tool calls with arbitrary JSON arguments through
// the MCP server itself (the SDK's decoding and schema checks, then the
// tools' own validation) and checks what reaches the human: every queued
// request passes validation unchanged and belongs to this bottle. The
// server must answer every call, never crash or drop the session.
func FuzzMCPToolCall(f *testing.F) {
	for _, s := range []struct {
		tool uint8
		args string
	}{
		{0, `{"host":"registry.npmjs.org","reason":"install deps"}`},
		{0, `{"host":"*.example.com","reason":"x"}`},
		{0, `{"host":"10.0.0.1","reason":"x"}`},
		{0, `{"host":"EXAMPLE.com.","reason":"  padded  "}`},
		{0, `{"host":"a.example","reason":"\u001b[2J\u202etxt"}`},
		{0, `{"host":["a.example"],"reason":1}`},
		{0, `{"host":"a.example","reason":"x","extra":true}`},
		{1, `{"host":"api.github.com","token_env":"GH_TOKEN","reason":"push"}`},
		{1, `{"host":"api.github.com","token_env":"$(id)","reason":"push"}`},
		{1, `{"host":"*.github.com","token_env":"GH","reason":"r"}`},
		{2, `{"description":"add a repo\nplease"}`},
		{2, `{"description":""}`},
		{3, `{}`},
		{4, `{"x":1}`},
		{0, `null`},
	} {
		f.Add(s.tool, []byte(s.args))
	}
	root := f.TempDir()
	cfg := Config{
		Listen:           "127.0.0.1:0",
		Slug:             "fuzz-abc12",
		QueueDir:         filepath.Join(root, "queue"),
		CurrentConfigDir: filepath.Join(root, "current"),
		// Calls that queue a request time out at once: the fuzzer is
		// the only party, no human decides.
		DecisionTimeout: Duration(time.Millisecond),
		MaxPending:      1000,
	}
	srv, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), PollInterval: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.mcp.Connect(ctx, st, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "fuzz", Version: "v0"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = cs.Close() })

	f.Fuzz(func(t *testing.T, tool uint8, args []byte) {
		if !json.Valid(args) || len(args) > 64<<10 {
			return
		}
		name := fuzzTools[int(tool)%len(fuzzTools)]
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: name, Arguments: json.RawMessage(args)})
		if err != nil && (callCtx.Err() != nil || strings.Contains(err.Error(), "closed")) {
			t.Fatalf("%s(%s): the server did not answer: %v", name, args, err)
		}
		entries, err := ListRequests(cfg.QueueDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			checkQueued(t, cfg.Slug, e.Request, name, args)
		}
		// Keep the queue small so every input costs the same.
		files, _ := os.ReadDir(cfg.QueueDir)
		for _, fi := range files {
			_ = os.Remove(filepath.Join(cfg.QueueDir, fi.Name()))
		}
	})
}

// checkQueued fails unless r is what a valid call would have queued.
func checkQueued(t *testing.T, slug string, r Request, tool string, args []byte) {
	t.Helper()
	if r.Slug != slug || !ValidID(r.ID) {
		t.Fatalf("%s(%s) queued %+v", tool, args, r)
	}
	switch r.Kind {
	case KindEgress:
		a := EgressArgs{Host: r.Host, Reason: r.Reason}
		if err := a.Validate(); err != nil || a.Host != r.Host || a.Reason != r.Reason || r.TokenEnv != "" || r.Description != "" {
			t.Fatalf("%s(%s) queued an invalid egress request %+v: %v", tool, args, r, err)
		}
	case KindRoute:
		a := RouteArgs{Host: r.Host, TokenEnv: r.TokenEnv, Reason: r.Reason}
		if err := a.Validate(); err != nil || a.Host != r.Host || a.Reason != r.Reason || r.Description != "" {
			t.Fatalf("%s(%s) queued an invalid route request %+v: %v", tool, args, r, err)
		}
	case KindChange:
		a := ChangeArgs{Description: r.Description}
		if err := a.Validate(); err != nil || a.Description != r.Description || r.Host != "" || r.TokenEnv != "" {
			t.Fatalf("%s(%s) queued an invalid change request %+v: %v", tool, args, r, err)
		}
	default:
		t.Fatalf("%s(%s) queued a request of kind %q", tool, args, r.Kind)
	}
}
