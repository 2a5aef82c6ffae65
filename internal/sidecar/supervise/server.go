package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bot-bottle/bot-bottle/internal/sidecar/egress"
)

// Options are the knobs outside the JSON config.
type Options struct {
	// Logger receives JSON lines; stdout when nil.
	Logger *slog.Logger
	// PollInterval is how often a waiting call looks for its decision.
	PollInterval time.Duration
	// Version is reported to MCP clients.
	Version string
}

// Server is the supervise MCP server.
type Server struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	mcp  *mcp.Server
	srv  *http.Server
	ln   net.Listener
}

// ToolResult is what request_* tools return.
type ToolResult struct {
	ID      string `json:"id"`
	Status  string `json:"status" jsonschema:"approved, denied or timed_out"`
	Message string `json:"message"`
}

// ConfigView is what get_config returns.
type ConfigView struct {
	Slug            string           `json:"slug"`
	Effective       any              `json:"effective,omitempty" jsonschema:"the bottle's effective configuration, secrets omitted"`
	DynamicAllow    []string         `json:"dynamic_allow" jsonschema:"hosts approved during this session"`
	ApprovedRoutes  []map[string]any `json:"approved_routes,omitempty" jsonschema:"routes approved for the next launch"`
	PendingRequests int              `json:"pending_requests"`
}

// StatusTimedOut is returned when the human did not decide in time.
const StatusTimedOut = "timed_out"

// New builds the server; call Start to listen.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "bot-bottle-supervise", Version: opts.Version}, &mcp.ServerOptions{
		Instructions: "Ask the human who runs this bot-bottle sandbox for more access. " +
			"Each request_* call waits until the human approves or denies it, or a timeout passes.",
	})
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "get_config",
		Description: "Return the bottle's current effective configuration (allowed hosts, routes, git repos; secrets omitted) and what has been approved during this session.",
	}, s.getConfig)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "request_egress",
		Description: "Ask the human to allow network access to a host through the egress proxy. Waits for the decision; on approval the host is reachable without restarting.",
	}, s.requestEgress)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "request_route",
		Description: "Ask the human for an authenticated route: requests to host get a token from an environment variable on the human's machine injected by the egress proxy. The agent never sees the token. Takes effect at the next launch.",
	}, s.requestRoute)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "request_change",
		Description: "Ask the human for any other change to the bottle (a git repository, a tool, a setting), described in words.",
	}, s.requestChange)
	return s, nil
}

// Handler serves the MCP endpoint at MCPPath and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{Logger: s.log})
	mux.Handle(MCPPath, h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	return mux
}

// Start listens, serves and logs "ready".
func (s *Server) Start() error {
	if err := os.MkdirAll(s.cfg.QueueDir, 0o700); err != nil {
		return fmt.Errorf("supervise queue dir: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("supervise listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() { _ = s.srv.Serve(ln) }()
	s.log.Info("ready", "listen", ln.Addr().String(), "endpoint", MCPPath, "slug", s.cfg.Slug)
	return nil
}

// Addr is the listener's address after Start.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the server; waiting tool calls end with their context.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil
		}
	}
	return err
}

func (s *Server) getConfig(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, ConfigView, error) {
	v := ConfigView{Slug: s.cfg.Slug, DynamicAllow: []string{}}
	raw := []byte(s.cfg.EffectiveConfig)
	if b, err := os.ReadFile(filepath.Join(s.cfg.CurrentConfigDir, EffectiveConfigFile)); err == nil && json.Valid(b) {
		raw = b
	}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &v.Effective)
	}
	if hosts, err := egress.ReadDynamicAllow(filepath.Join(s.cfg.CurrentConfigDir, DynamicAllowFile)); err == nil && hosts != nil {
		v.DynamicAllow = hosts
	}
	_ = readJSON(filepath.Join(s.cfg.CurrentConfigDir, ApprovedRoutesFile), &v.ApprovedRoutes)
	if entries, err := ListRequests(s.cfg.QueueDir); err == nil {
		for _, e := range entries {
			if e.Status == StatusPending {
				v.PendingRequests++
			}
		}
	}
	return nil, v, nil
}

func (s *Server) requestEgress(ctx context.Context, _ *mcp.CallToolRequest, a EgressArgs) (*mcp.CallToolResult, ToolResult, error) {
	if err := a.Validate(); err != nil {
		return nil, ToolResult{}, err
	}
	return s.submit(ctx, Request{Kind: KindEgress, Host: a.Host, Reason: a.Reason})
}

func (s *Server) requestRoute(ctx context.Context, _ *mcp.CallToolRequest, a RouteArgs) (*mcp.CallToolResult, ToolResult, error) {
	if err := a.Validate(); err != nil {
		return nil, ToolResult{}, err
	}
	return s.submit(ctx, Request{Kind: KindRoute, Host: a.Host, TokenEnv: a.TokenEnv, Reason: a.Reason})
}

func (s *Server) requestChange(ctx context.Context, _ *mcp.CallToolRequest, a ChangeArgs) (*mcp.CallToolResult, ToolResult, error) {
	if err := a.Validate(); err != nil {
		return nil, ToolResult{}, err
	}
	return s.submit(ctx, Request{Kind: KindChange, Description: a.Description})
}

// submit queues r and waits for its decision, the deadline or the
// caller's cancellation, whichever comes first.
func (s *Server) submit(ctx context.Context, r Request) (*mcp.CallToolResult, ToolResult, error) {
	if entries, err := ListRequests(s.cfg.QueueDir); err == nil {
		n := 0
		for _, e := range entries {
			if e.Status == StatusPending {
				n++
			}
		}
		if n >= s.cfg.maxPending() {
			return nil, ToolResult{}, fmt.Errorf("%d requests are already waiting for the human; wait for them before asking again", n)
		}
	}
	now := time.Now().UTC()
	r.Slug, r.Created, r.Deadline = s.cfg.Slug, now, now.Add(s.cfg.timeout())
	if err := createRequest(s.cfg.QueueDir, &r); err != nil {
		s.log.Error("queue request failed", "err", err.Error())
		return nil, ToolResult{}, errors.New("could not queue the request")
	}
	s.log.Info("request queued", "id", r.ID, "kind", r.Kind, "host", r.Host, "token_env", r.TokenEnv)

	tick := time.NewTicker(s.opts.PollInterval)
	defer tick.Stop()
	deadline := time.NewTimer(time.Until(r.Deadline))
	defer deadline.Stop()
	for {
		if d, err := readDecision(s.cfg.QueueDir, r.ID); err == nil {
			res := ToolResult{ID: r.ID, Status: StatusDenied, Message: d.Message}
			if d.Approved {
				res.Status = StatusApproved
			}
			s.log.Info("request decided", "id", r.ID, "status", res.Status)
			return nil, res, nil
		}
		select {
		case <-ctx.Done():
			s.log.Info("request abandoned by the caller", "id", r.ID)
			return nil, ToolResult{}, ctx.Err()
		case <-deadline.C:
			s.log.Info("request timed out", "id", r.ID)
			return nil, ToolResult{ID: r.ID, Status: StatusTimedOut, Message: fmt.Sprintf(
				"the human did not decide within %s; the request expired (id %s). Carry on without it or ask again later.",
				s.cfg.timeout(), r.ID)}, nil
		case <-tick.C:
		}
	}
}
