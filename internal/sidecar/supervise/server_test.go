package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
	"github.com/bot-bottle/bot-bottle/internal/statedir"
)

type fixture struct {
	t        *testing.T
	root     string
	stateDir string
	srv      *Server
	session  *mcp.ClientSession
	logs     *strings.Builder
}

func newFixture(t *testing.T, mutate ...func(*Config)) *fixture {
	t.Helper()
	root := t.TempDir()
	stateDir := filepath.Join(root, "demo-abc12")
	cfg := Config{
		Listen:           "127.0.0.1:0",
		Slug:             "demo-abc12",
		QueueDir:         filepath.Join(stateDir, statedir.SuperviseQueue),
		CurrentConfigDir: filepath.Join(stateDir, statedir.CurrentConfigDir),
		DecisionTimeout:  Duration(10 * time.Second),
		EffectiveConfig:  json.RawMessage(`{"allow":["registry.npmjs.org"],"routes":[{"host":"api.github.com","token_env":"GH_TOKEN"}]}`),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	srv, err := New(cfg, Options{
		Logger:       slog.New(slog.NewJSONHandler(lockedWriter{&mu, logs}, nil)),
		PollInterval: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	client := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "v0"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: "http://" + srv.Addr().String() + MCPPath, MaxRetries: -1,
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = session.Close() })
	return &fixture{t: t, root: root, stateDir: stateDir, srv: srv, session: session, logs: logs}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type callResult struct {
	res *mcp.CallToolResult
	err error
}

func (f *fixture) callAsync(name string, args map[string]any) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := f.session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		ch <- callResult{res, err}
	}()
	return ch
}

func (f *fixture) call(name string, args map[string]any) *mcp.CallToolResult {
	r := <-f.callAsync(name, args)
	require.NoError(f.t, r.err)
	return r.res
}

// waitPending waits (bounded) for the n-th request to be queued.
func (f *fixture) waitPending(n int) []Entry {
	f.t.Helper()
	var entries []Entry
	require.Eventually(f.t, func() bool {
		var err error
		entries, err = ListRequests(filepath.Join(f.stateDir, statedir.SuperviseQueue))
		return err == nil && len(entries) >= n
	}, 5*time.Second, 10*time.Millisecond)
	return entries
}

func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	require.False(t, res.IsError, "tool error: %v", text(res))
	b, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	m := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func text(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestToolsListed(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := f.session.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	assert.ElementsMatch(t, []string{"get_config", "request_egress", "request_route", "request_change"}, names)
}

func TestRequestEgressApprovedReachesEgressLive(t *testing.T) {
	f := newFixture(t)

	// An egress proxy of the same bottle, reading the dynamic allow file
	// that approval writes.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hi from "+r.Host)
	}))
	defer up.Close()
	eg, err := egress.New(egress.Config{
		Listen:           "127.0.0.1:0",
		DynamicAllowFile: filepath.Join(f.stateDir, statedir.CurrentConfigDir, DynamicAllowFile),
	}, egress.Options{
		Logger:       slog.New(slog.NewJSONHandler(io.Discard, nil)),
		PollInterval: time.Hour, // the reload hook below must be what applies it
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, up.Listener.Addr().String())
		},
	})
	require.NoError(t, err)
	require.NoError(t, eg.Start())
	defer func() { _ = eg.Shutdown(context.Background()) }()
	proxyURL, _ := url.Parse("http://" + eg.Addr().String())
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	get := func() int {
		resp, err := hc.Get("http://pkgs.example.test/x")
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusForbidden, get())

	ch := f.callAsync("request_egress", map[string]any{"host": "PKGS.example.test", "reason": "install deps"})
	entries := f.waitPending(1)
	e := entries[0]
	assert.Equal(t, StatusPending, e.Status)
	assert.Equal(t, KindEgress, e.Kind)
	assert.Equal(t, "pkgs.example.test", e.Host, "normalized")
	assert.Equal(t, "demo-abc12", e.Slug)
	st, err := os.Stat(requestPath(filepath.Join(f.stateDir, statedir.SuperviseQueue), e.ID))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	sd, err := FindRequest(f.root, e.ID)
	require.NoError(t, err)
	require.Equal(t, f.stateDir, sd)
	reloaded := false
	d, err := Approve(sd, e.ID, WithReload(func(r Request) error {
		reloaded = true
		assert.Equal(t, "pkgs.example.test", r.Host)
		return eg.Reload()
	}))
	require.NoError(t, err)
	assert.True(t, reloaded)
	assert.True(t, d.Approved)

	var r callResult
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("tool call did not return after approval")
	}
	require.NoError(t, r.err)
	out := structured(t, r.res)
	assert.Equal(t, "approved", out["status"])
	assert.Equal(t, e.ID, out["id"])
	assert.Contains(t, out["message"], "pkgs.example.test is now allowed")

	hosts, err := egress.ReadDynamicAllow(filepath.Join(f.stateDir, statedir.CurrentConfigDir, DynamicAllowFile))
	require.NoError(t, err)
	assert.Equal(t, []string{"pkgs.example.test"}, hosts)
	assert.Equal(t, http.StatusOK, get(), "egress allows it without a restart")

	entries, err = ListRequests(filepath.Join(f.stateDir, statedir.SuperviseQueue))
	require.NoError(t, err)
	assert.Equal(t, StatusApproved, entries[0].Status)
	_, err = Approve(sd, e.ID)
	require.ErrorIs(t, err, ErrAlreadyDecided)
}

func TestRequestDenied(t *testing.T) {
	f := newFixture(t)
	ch := f.callAsync("request_change", map[string]any{"description": "add the repo acme/tools to git"})
	e := f.waitPending(1)[0]
	_, err := Deny(f.stateDir, e.ID, "not today")
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	out := structured(t, r.res)
	assert.Equal(t, "denied", out["status"])
	assert.Equal(t, "denied by the human: not today", out["message"])
	_, err = Approve(f.stateDir, e.ID)
	require.ErrorIs(t, err, ErrAlreadyDecided)
}

func TestRequestTimesOut(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DecisionTimeout = Duration(200 * time.Millisecond) })
	start := time.Now()
	res := f.call("request_egress", map[string]any{"host": "slow.example.test", "reason": "r"})
	out := structured(t, res)
	assert.Equal(t, StatusTimedOut, out["status"])
	assert.Less(t, time.Since(start), 5*time.Second)
	entries := f.waitPending(1)
	assert.Equal(t, StatusExpired, entries[0].Status)
	_, err := Approve(f.stateDir, entries[0].ID)
	require.ErrorIs(t, err, ErrExpired)
	_, err = os.Stat(filepath.Join(f.stateDir, statedir.CurrentConfigDir, DynamicAllowFile))
	assert.True(t, errors.Is(err, os.ErrNotExist), "an expired request changes nothing")
}

func TestRequestRouteRecordedForNextLaunch(t *testing.T) {
	f := newFixture(t)
	ch := f.callAsync("request_route", map[string]any{"host": "api.example.test", "token_env": "EXAMPLE_TOKEN", "reason": "call the API"})
	e := f.waitPending(1)[0]
	assert.Equal(t, "EXAMPLE_TOKEN", e.TokenEnv)
	_, err := Approve(f.stateDir, e.ID)
	require.NoError(t, err)
	out := structured(t, (<-ch).res)
	assert.Equal(t, "approved", out["status"])
	assert.Contains(t, out["message"], "next launched")

	cfg := structured(t, f.call("get_config", map[string]any{}))
	routes := cfg["approved_routes"].([]any)
	require.Len(t, routes, 1)
	assert.Equal(t, "api.example.test", routes[0].(map[string]any)["host"])
	assert.Equal(t, "EXAMPLE_TOKEN", routes[0].(map[string]any)["token_env"])
}

func TestGetConfig(t *testing.T) {
	f := newFixture(t)
	out := structured(t, f.call("get_config", map[string]any{}))
	assert.Equal(t, "demo-abc12", out["slug"])
	assert.Equal(t, []any{"registry.npmjs.org"}, out["effective"].(map[string]any)["allow"])
	assert.Equal(t, []any{}, out["dynamic_allow"])

	cur := filepath.Join(f.stateDir, statedir.CurrentConfigDir)
	require.NoError(t, os.MkdirAll(cur, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(cur, EffectiveConfigFile), []byte(`{"allow":["x.example.test"]}`), 0o644))
	require.NoError(t, egress.WriteDynamicAllow(filepath.Join(cur, DynamicAllowFile), []string{"y.example.test"}))
	out = structured(t, f.call("get_config", map[string]any{}))
	assert.Equal(t, []any{"x.example.test"}, out["effective"].(map[string]any)["allow"])
	assert.Equal(t, []any{"y.example.test"}, out["dynamic_allow"])
}

func TestInvalidArgumentsAreToolErrors(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		tool string
		args map[string]any
		want string
	}{
		{"request_egress", map[string]any{"host": "10.0.0.1", "reason": "r"}, "not an IP"},
		{"request_egress", map[string]any{"host": "bad host", "reason": "r"}, "contains"},
		{"request_egress", map[string]any{"host": "localhost", "reason": "r"}, "fully qualified"},
		{"request_egress", map[string]any{"host": "a.example.test", "reason": ""}, "reason is required"},
		{"request_egress", map[string]any{"host": "a.example.test", "reason": "x\x1b[2Jy"}, "control"},
		{"request_route", map[string]any{"host": "*.example.test", "token_env": "T", "reason": "r"}, "wildcard"},
		{"request_route", map[string]any{"host": "a.example.test", "token_env": "$(rm -rf)", "reason": "r"}, "token_env"},
		{"request_change", map[string]any{"description": strings.Repeat("x", 5000)}, "longer than"},
	}
	for _, tc := range cases {
		res := f.call(tc.tool, tc.args)
		assert.True(t, res.IsError, "%s %v", tc.tool, tc.args)
		assert.Contains(t, text(res), tc.want)
	}
	entries, err := ListRequests(filepath.Join(f.stateDir, statedir.SuperviseQueue))
	require.NoError(t, err)
	assert.Empty(t, entries, "invalid requests are never queued")
}

func TestMaxPending(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxPending = 1 })
	ch := f.callAsync("request_change", map[string]any{"description": "one"})
	e := f.waitPending(1)[0]
	res := f.call("request_change", map[string]any{"description": "two"})
	assert.True(t, res.IsError)
	assert.Contains(t, text(res), "already waiting")
	_, err := Deny(f.stateDir, e.ID, "")
	require.NoError(t, err)
	<-ch
}

func TestFindRequestAndIDs(t *testing.T) {
	root := t.TempDir()
	for _, slug := range []string{"a-1", "b-2"} {
		q := filepath.Join(root, slug, statedir.SuperviseQueue)
		r := Request{Slug: slug, Kind: KindChange, Description: "d", Created: time.Now(), Deadline: time.Now().Add(time.Hour)}
		require.NoError(t, createRequest(q, &r))
		assert.True(t, ValidID(r.ID), r.ID)
		sd, err := FindRequest(root, r.ID)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(root, slug), sd)
	}
	for _, bad := range []string{"../../etc", "", "abcdefgh1", "ABCDEFGH"} {
		_, err := FindRequest(root, bad)
		require.ErrorIs(t, err, ErrNotFound, bad)
		_, err = Approve(filepath.Join(root, "a-1"), bad)
		require.ErrorIs(t, err, ErrNotFound, bad)
	}
}

func TestConcurrentDecisionsOneWins(t *testing.T) {
	root := t.TempDir()
	sd := filepath.Join(root, "c-3")
	q := filepath.Join(sd, statedir.SuperviseQueue)
	r := Request{Slug: "c-3", Kind: KindEgress, Host: "a.example.test", Reason: "r", Created: time.Now(), Deadline: time.Now().Add(time.Hour)}
	require.NoError(t, createRequest(q, &r))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, errs[i] = Approve(sd, r.ID)
			} else {
				_, errs[i] = Deny(sd, r.ID, "no")
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			assert.ErrorIs(t, err, ErrAlreadyDecided)
		}
	}
	assert.Equal(t, 1, ok)
}

func TestConfigValidateAndLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "supervise.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"listen":":8080","slug":"s-1","queue_dir":"/q","current_config_dir":"/c","decision_timeout":"90s"}`), 0o644))
	c, err := LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, c.timeout())
	require.NoError(t, os.WriteFile(p, []byte(`{"listen":":8080","slug":"s/1","queue_dir":"","current_config_dir":"/c","decision_timeout":"soon"}`), 0o644))
	_, err = LoadConfig(p)
	require.Error(t, err)
	bad := Config{Listen: "nope", Slug: "a b"}
	err = bad.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen")
	assert.Contains(t, err.Error(), "queue_dir")
}
