package egress

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/bot-bottle/bot-bottle/internal/ca"
)

// Decisions written to the audit log and used as the requests metric label.
const (
	DecisionAllow  = "allow"  // forwarded or tunnelled unchanged
	DecisionDeny   = "deny"   // host, port or form not allowed
	DecisionInject = "inject" // forwarded with the route's token
	DecisionBlock  = "block"  // the exfiltration guard found a secret
)

// DefaultPollInterval is how often the dynamic allow file's metadata is
// checked when Options.PollInterval is zero.
const DefaultPollInterval = 2 * time.Second

// Options are the knobs that are not part of the JSON config: where logs
// go and, for tests, how upstreams are reached and trusted.
type Options struct {
	// Logger receives audit and service lines; JSON to stdout when nil.
	Logger *slog.Logger
	// UpstreamRoots verifies upstream TLS servers; the system pool when nil.
	UpstreamRoots *x509.CertPool
	// Dial replaces the dialer for every upstream connection (forwarded,
	// intercepted and tunnelled), e.g. to map test hostnames to loopback.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// PollInterval is how often DynamicAllowFile is checked for changes.
	PollInterval time.Duration
}

// Server is a running (or ready to run) egress proxy.
type Server struct {
	cfg   Config
	opts  Options
	log   *slog.Logger
	ca    *tls.Certificate
	proxy *goproxy.ProxyHttpServer
	tr    *http.Transport
	m     *metrics

	policy       atomic.Pointer[policy]
	connectPorts map[int]bool
	httpPorts    map[int]bool
	maxScan      int64

	reloadMu sync.Mutex
	dynStamp os.FileInfo

	proxySrv   *http.Server
	metricsSrv *http.Server
	proxyLn    net.Listener
	metricsLn  net.Listener
	stopPoll   chan struct{}
	pollDone   chan struct{}
}

type connectKey struct{}

// connectDecision carries the CONNECT's verdict to goproxy's handlers and,
// through ProxyCtx.UserData, to every request inside an intercepted tunnel.
type connectDecision struct {
	host      string // normalized
	port      int
	authority string // host[:port] to send intercepted requests to
	intercept bool
	rule      string
	start     time.Time
}

// New validates cfg, loads the CA and secrets and builds the proxy. It
// does not listen; call Start.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	s := &Server{
		cfg:          cfg,
		opts:         opts,
		log:          opts.Logger,
		m:            newMetrics(),
		connectPorts: map[int]bool{},
		httpPorts:    map[int]bool{80: true},
		maxScan:      cfg.MaxBodyScanBytes,
	}
	if s.maxScan == 0 {
		s.maxScan = DefaultMaxBodyScan
	}
	ports := cfg.AllowedConnectPorts
	if len(ports) == 0 {
		ports = DefaultConnectPorts
	}
	for _, p := range ports {
		s.connectPorts[p] = true
		s.httpPorts[p] = true
	}
	if cfg.CACert != "" {
		pair, err := ca.Load(cfg.CACert, cfg.CAKey)
		if err != nil {
			return nil, err
		}
		s.ca = &pair
	}
	if _, err := s.loadPolicy(); err != nil {
		return nil, err
	}

	if cfg.UpstreamCAFile != "" && opts.UpstreamRoots == nil {
		roots, err := upstreamRoots(cfg.UpstreamCAFile)
		if err != nil {
			return nil, err
		}
		opts.UpstreamRoots = roots
	}

	dial := opts.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	s.tr = &http.Transport{
		// Never chain to a proxy from the sidecar's environment.
		Proxy:                 nil,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: opts.UpstreamRoots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
	}

	p := goproxy.NewProxyHttpServer()
	p.Tr = s.tr
	p.Logger = goproxyLogger{s: s}
	p.KeepAcceptEncoding = true
	p.CertStore = newCertCache(1024)
	p.ConnectDial = nil
	p.ConnectDialWithReq = s.dialTunnel
	p.OnRequest().HandleConnectFunc(s.connectAction)
	p.OnRequest().DoFunc(s.handleRequest)
	s.proxy = p
	return s, nil
}

// loadPolicy reads secrets and the dynamic allow file and swaps the policy.
func (s *Server) loadPolicy() (*policy, error) {
	var secrets map[string]string
	if s.cfg.SecretsFile != "" {
		var err error
		if secrets, err = LoadSecrets(s.cfg.SecretsFile); err != nil {
			return nil, err
		}
	}
	var dynamic []string
	if s.cfg.DynamicAllowFile != "" {
		st, statErr := os.Stat(s.cfg.DynamicAllowFile)
		var err error
		if dynamic, err = ReadDynamicAllow(s.cfg.DynamicAllowFile); err != nil {
			return nil, err
		}
		if statErr == nil {
			s.dynStamp = st
		} else {
			s.dynStamp = nil
		}
	}
	p, warnings, err := buildPolicy(&s.cfg, secrets, dynamic)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		s.log.Warn(w)
	}
	s.policy.Store(p)
	return p, nil
}

// Reload re-reads the secrets file and the dynamic allow file and swaps
// the policy atomically. Listeners and open connections are untouched; a
// request in flight finishes under the policy it started with. On error
// the previous policy stays in force.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	p, err := s.loadPolicy()
	if err != nil {
		s.m.reloads.WithLabelValues("error").Inc()
		s.log.Error("reload failed", "err", err.Error())
		return err
	}
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("reloaded", "dynamic_hosts", p.dynamic, "routes", len(p.routes))
	return nil
}

// Start binds the listeners, serves, starts watching the dynamic allow
// file and logs the "ready" line.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("egress listen %s: %w", s.cfg.Listen, err)
	}
	s.proxyLn = ln
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	s.proxySrv = &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog}
	if s.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("egress metrics listen %s: %w", s.cfg.MetricsListen, err)
		}
		s.metricsLn = mln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.m.handler())
		mux.HandleFunc("GET /healthz", healthz)
		s.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		go func() { _ = s.metricsSrv.Serve(mln) }()
	}
	go func() { _ = s.proxySrv.Serve(ln) }()
	if s.cfg.DynamicAllowFile != "" {
		s.stopPoll = make(chan struct{})
		s.pollDone = make(chan struct{})
		go s.poll()
	}
	attrs := []any{"listen", ln.Addr().String()}
	if s.metricsLn != nil {
		attrs = append(attrs, "metrics_listen", s.metricsLn.Addr().String())
	}
	s.log.Info("ready", attrs...)
	return nil
}

// Addr is the proxy listener's address (after Start).
func (s *Server) Addr() net.Addr { return s.proxyLn.Addr() }

// MetricsAddr is the metrics listener's address, nil when disabled.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Shutdown stops accepting, waits for plain requests to finish until ctx
// ends, then closes what is left. Tunnels are hijacked connections that
// http.Server does not track; they end when the process exits.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.stopPoll != nil {
		close(s.stopPoll)
		<-s.pollDone
		s.stopPoll = nil
	}
	var errs []error
	for _, srv := range []*http.Server{s.proxySrv, s.metricsSrv} {
		if srv == nil {
			continue
		}
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
	}
	s.tr.CloseIdleConnections()
	return errors.Join(errs...)
}

// poll reloads when the dynamic allow file is created, replaced, changed
// or removed. Writers replace it by rename, so the identity check catches
// two writes within one mtime tick.
func (s *Server) poll() {
	defer close(s.pollDone)
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopPoll:
			return
		case <-t.C:
		}
		st, err := os.Stat(s.cfg.DynamicAllowFile)
		s.reloadMu.Lock()
		prev := s.dynStamp
		s.reloadMu.Unlock()
		if !fileChanged(prev, st, err) {
			continue
		}
		_ = s.Reload()
	}
}

func fileChanged(prev, cur os.FileInfo, err error) bool {
	if err != nil {
		return prev != nil
	}
	if prev == nil {
		return true
	}
	return !os.SameFile(prev, cur) || !prev.ModTime().Equal(cur.ModTime()) || prev.Size() != cur.Size()
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

// ServeHTTP is the proxy listener's handler: CONNECT decisions happen here
// so a refusal is an ordinary HTTP response, everything else goes through
// goproxy.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		s.serveConnect(w, r)
	case !r.URL.IsAbs():
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			healthz(w, r)
			return
		}
		http.Error(w, "bot-bottle egress is a forward proxy; use it through HTTP_PROXY/HTTPS_PROXY", http.StatusBadRequest)
	default:
		s.proxy.ServeHTTP(w, r)
	}
}

func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	pol := s.policy.Load()
	rec := &auditRec{method: http.MethodConnect, start: start, pol: pol}
	// The decision is made on the request target alone, never on a Host
	// header standing in for a missing or unparsable one: goproxy dials the
	// target, so the two must be the same thing.
	host, port, err := splitHostPort(r.URL.Host, 443)
	rec.host = host
	if err != nil || ValidHost(host) != nil {
		s.refuse(w, rec, http.StatusBadRequest, DecisionDeny, "bad_target",
			"bot-bottle egress: CONNECT target is not a valid host:port")
		return
	}
	if kind := pol.scan.scanString(host); kind != "" {
		s.refuse(w, rec, http.StatusForbidden, DecisionBlock, kind+"_in_host", s.blockMessage(kind, "host"))
		return
	}
	if !s.connectPorts[port] {
		s.refuse(w, rec, http.StatusForbidden, DecisionDeny, "connect_port", fmt.Sprintf(
			"bot-bottle egress: CONNECT to %q on port %d is not allowed; allowed ports: %s",
			host, port, portList(s.connectPorts)))
		return
	}
	src, ok := pol.allow.match(host)
	if !ok {
		s.refuse(w, rec, http.StatusForbidden, DecisionDeny, "not_allowed", s.denyMessage(host))
		return
	}
	d := &connectDecision{host: host, port: port, authority: authority(host, port, 443), start: start}
	// What a tunnel dials is exactly what was decided: the normalized
	// host and the numeric port (a target such as "host:http" would
	// otherwise be dialed with the port resolved by service name).
	r.URL.Host = net.JoinHostPort(host, strconv.Itoa(port))
	route := pol.routes[host]
	_, pass := pol.passthrough.match(host)
	switch {
	case s.ca == nil:
		d.rule = "tunnel:" + src
	case route != nil && route.injects():
		d.intercept, d.rule = true, "intercept:"+src
	case port == 443 && !pass:
		d.intercept, d.rule = true, "intercept:"+src
	default:
		d.rule = "tunnel:" + src
	}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), connectKey{}, d)))
}

// connectAction tells goproxy whether to intercept; the decision was made
// in serveConnect.
func (s *Server) connectAction(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	d, _ := ctx.Req.Context().Value(connectKey{}).(*connectDecision)
	if d == nil {
		return goproxy.RejectConnect, host
	}
	ctx.UserData = d
	if d.intercept {
		return &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(s.ca)}, host
	}
	return &goproxy.ConnectAction{Action: goproxy.ConnectAccept}, host
}

// dialTunnel dials the upstream of a non-intercepted CONNECT and wraps the
// connection so the tunnel's audit line is written when it closes.
func (s *Server) dialTunnel(req *http.Request, network, addr string) (net.Conn, error) {
	conn, err := s.tr.DialContext(req.Context(), network, addr)
	d, _ := req.Context().Value(connectKey{}).(*connectDecision)
	if d == nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, errors.New("egress: tunnel without a decision")
	}
	rec := &auditRec{method: http.MethodConnect, host: d.host, start: d.start, pol: s.policy.Load()}
	if err != nil {
		s.emit(rec, DecisionAllow, d.rule, http.StatusBadGateway, 0)
		return nil, err
	}
	return wrapTunnel(conn, func(in, out int64) {
		rec.reqBytes.Store(out)
		s.emit(rec, DecisionAllow, d.rule, http.StatusOK, in)
	}), nil
}

// handleRequest runs for plain proxied requests and for every request
// inside an intercepted tunnel.
func (s *Server) handleRequest(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	pol := s.policy.Load()
	rec := &auditRec{method: req.Method, start: time.Now(), pol: pol}
	host := NormalizeHost(req.URL.Hostname())
	rec.host, rec.path = host, req.URL.Path
	port, err := urlPort(req.URL)
	if err != nil {
		return req, s.refuseResp(req, rec, http.StatusBadRequest, DecisionDeny, "bad_target",
			"bot-bottle egress: the request URL has no usable port")
	}

	d, inTunnel := ctx.UserData.(*connectDecision)
	rule := ""
	if inTunnel {
		// Inside a tunnel the Host header picks the upstream; it must name
		// the host the CONNECT was allowed for, or any allowed tunnel could
		// reach any host (and collect that route's token).
		if host != d.host || port != d.port {
			return req, s.refuseResp(req, rec, http.StatusForbidden, DecisionDeny, "host_mismatch", fmt.Sprintf(
				"bot-bottle egress: request for %q inside a tunnel to %q", host, d.host))
		}
		req.URL.Host = d.authority
		rule = strings.TrimPrefix(d.rule, "intercept:")
	} else {
		if req.URL.Scheme != "http" {
			return req, s.refuseResp(req, rec, http.StatusBadRequest, DecisionDeny, "bad_scheme",
				"bot-bottle egress: only http:// URLs are proxied directly; use CONNECT for https")
		}
		if !s.httpPorts[port] {
			return req, s.refuseResp(req, rec, http.StatusForbidden, DecisionDeny, "port", fmt.Sprintf(
				"bot-bottle egress: %q on port %d is not allowed; allowed ports: 80, %s",
				host, port, portList(s.connectPorts)))
		}
		src, ok := pol.allow.match(host)
		if !ok {
			return req, s.refuseResp(req, rec, http.StatusForbidden, DecisionDeny, "not_allowed", s.denyMessage(host))
		}
		rule = src
	}

	route := pol.routes[host]
	if route != nil && route.injects() {
		// The agent's own value of the injected header is replaced, so it
		// never leaves and is not exfiltration.
		req.Header.Del(route.header)
	}
	if kind, where := s.scanRequest(pol, req); kind != "" {
		return req, s.refuseResp(req, rec, http.StatusForbidden, DecisionBlock, kind+"_in_"+where, s.blockMessage(kind, where))
	}
	if req.Body != nil && req.Body != http.NoBody {
		// Counted as read, not at Close: the transport may close the body
		// after the response (and its audit line) is already done.
		cb := &countingBody{rc: req.Body}
		rec.reqBody = cb
		req.Body = cb
	}

	decision := DecisionAllow
	if route != nil && route.injects() {
		if !inTunnel {
			return req, s.refuseResp(req, rec, http.StatusForbidden, DecisionDeny, "route_requires_tls", fmt.Sprintf(
				"bot-bottle egress: %q takes an injected token and is reachable over https only", host))
		}
		req.Header.Set(route.header, route.value)
		// Without the agent's Accept-Encoding the transport asks for gzip
		// itself and hands back the body decoded, so the redactor can see
		// a token the upstream echoes (see roundTrip).
		req.Header.Del("Accept-Encoding")
		decision, rule = DecisionInject, "route:"+host
		s.m.injected.WithLabelValues(host).Inc()
	}
	ctx.RoundTripper = goproxy.RoundTripperFunc(func(r *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		return s.roundTrip(r, rec, decision, rule)
	})
	return req, nil
}

// scanRequest looks for secrets in the URL, the headers and a bounded
// prefix of the body; the prefix is put back in front of the rest.
func (s *Server) scanRequest(pol *policy, req *http.Request) (kind, where string) {
	if k := pol.scan.scanURL(req.URL); k != "" {
		return k, "url"
	}
	if k := pol.scan.scanString(req.Host); k != "" {
		return k, "url"
	}
	for name, vals := range req.Header {
		if name == "Proxy-Authorization" || name == "Proxy-Connection" {
			continue // hop-by-hop to this proxy; never forwarded
		}
		for _, v := range vals {
			if k := pol.scan.scanString(name + ": " + v); k != "" {
				return k, "header"
			}
		}
	}
	if req.Body == nil || req.Body == http.NoBody {
		return "", ""
	}
	prefix, err := io.ReadAll(io.LimitReader(req.Body, s.maxScan))
	if err != nil {
		// The client broke off its upload; forward what was read and let
		// the upstream see the truncated body fail.
		s.log.Debug("request body read failed", "err", err.Error())
	}
	orig := req.Body
	req.Body = &prefixBody{Reader: io.MultiReader(bytes.NewReader(prefix), orig), closer: orig}
	if k := pol.scan.scan(prefix); k != "" {
		return k, "body"
	}
	return "", ""
}

func (s *Server) roundTrip(req *http.Request, rec *auditRec, decision, rule string) (*http.Response, error) {
	t0 := time.Now()
	resp, err := s.tr.RoundTrip(req)
	s.m.upstream.Observe(time.Since(t0).Seconds())
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		s.emit(rec, decision, rule, http.StatusBadGateway, 0)
		msg := fmt.Sprintf("bot-bottle egress: upstream %q failed: %s", rec.host, rec.pol.scan.redact(err.Error()))
		return textResponse(req, http.StatusBadGateway, msg), nil
	}
	// An upstream that echoes request headers must not hand the agent the
	// token through a response header.
	for name, vals := range resp.Header {
		for i, v := range vals {
			if rec.pol.scan.scanString(v) == KindInjectedToken {
				resp.Header[name][i] = rec.pol.scan.redact(v)
			}
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil {
		s.emit(rec, decision, rule, resp.StatusCode, 0)
		return resp, nil
	}
	if decision == DecisionInject {
		// The upstream of a token route saw the token; it must not come
		// back to the agent in the body either.
		if !identityEncoded(resp.Header.Get("Content-Encoding")) {
			_ = resp.Body.Close()
			s.emit(rec, decision, rule, http.StatusBadGateway, 0)
			return textResponse(req, http.StatusBadGateway, fmt.Sprintf(
				"bot-bottle egress: upstream %q answered with a %q body, which the proxy cannot check for the injected token", rec.host, resp.Header.Get("Content-Encoding"))), nil
		}
		resp.Body = newRedactingBody(resp.Body, rec.pol.scan.needles)
	}
	status := resp.StatusCode
	resp.Body = &countingBody{rc: resp.Body, onClose: func(n int64) { s.emit(rec, decision, rule, status, n) }}
	return resp, nil
}

func (s *Server) refuse(w http.ResponseWriter, rec *auditRec, status int, decision, rule, msg string) {
	s.emit(rec, decision, rule, status, 0)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

func (s *Server) refuseResp(req *http.Request, rec *auditRec, status int, decision, rule, msg string) *http.Response {
	s.emit(rec, decision, rule, status, 0)
	return textResponse(req, status, msg+"\n")
}

func textResponse(req *http.Request, status int, body string) *http.Response {
	resp := goproxy.NewResponse(req, "text/plain; charset=utf-8", status, body)
	resp.Header.Set("X-Bot-Bottle-Egress", "refused")
	return resp
}

func (s *Server) denyMessage(host string) string {
	bottle := s.cfg.Bottle
	if bottle == "" {
		bottle = "<bottle>"
	}
	msg := fmt.Sprintf("bot-bottle egress: host %q is not allowed; add it to bottles.%s.allow or bottles.%s.egress.routes in the manifest",
		host, bottle, bottle)
	if s.cfg.Supervise {
		msg += ", or ask for it through the supervise tool request_egress"
	}
	return msg
}

func (s *Server) blockMessage(kind, where string) string {
	return fmt.Sprintf("bot-bottle egress: request blocked: its %s carries a secret (%s); secrets must not leave the bottle", where, kind)
}

// auditRec accumulates one request's audit fields.
type auditRec struct {
	method   string
	host     string
	path     string
	start    time.Time
	reqBytes atomic.Int64
	reqBody  *countingBody
	pol      *policy
}

// emit writes the audit line and counts the decision. Host and path pass
// through the scanner so a secret smuggled in them is not copied into the
// log.
func (s *Server) emit(rec *auditRec, decision, rule string, status int, n int64) {
	s.m.requests.WithLabelValues(decision).Inc()
	host, path := rec.host, rec.path
	if rec.pol != nil {
		if rec.pol.scan.scanString(host) != "" {
			host = "[redacted]"
		}
		if rec.pol.scan.scanString(path) != "" {
			path = "[redacted]"
		}
	}
	s.log.Info("request",
		"method", rec.method,
		"host", host,
		"path", path,
		"decision", decision,
		"rule", rule,
		"status", status,
		"bytes", n,
		"req_bytes", rec.requestBytes(),
		"duration_ms", time.Since(rec.start).Milliseconds(),
	)
}

func (rec *auditRec) requestBytes() int64 {
	if rec.reqBody != nil {
		return rec.reqBody.n.Load()
	}
	return rec.reqBytes.Load()
}

func splitHostPort(hp string, defPort int) (string, int, error) {
	if hp == "" {
		return "", 0, errors.New("empty")
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		// No port given.
		return NormalizeHost(hp), defPort, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return NormalizeHost(h), n, nil
}

func urlPort(u *url.URL) (int, error) {
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("bad port %q", p)
		}
		return n, nil
	}
	switch u.Scheme {
	case "http":
		return 80, nil
	case "https":
		return 443, nil
	}
	return 0, fmt.Errorf("no port for scheme %q", u.Scheme)
}

func authority(host string, port, defPort int) string {
	h := host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if port == defPort {
		return h
	}
	return h + ":" + strconv.Itoa(port)
}

func portList(m map[int]bool) string {
	var ps []int
	for p := range m {
		ps = append(ps, p)
	}
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j] < ps[j-1]; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// goproxyLogger sends goproxy's own warnings to the JSON log, with any
// injected token value redacted.
type goproxyLogger struct{ s *Server }

func (l goproxyLogger) Printf(format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	if p := l.s.policy.Load(); p != nil {
		msg = p.scan.redact(msg)
	}
	l.s.log.Warn("proxy", "detail", msg)
}

// certCache keeps interception certificates per host so each host is
// signed once, with a bound so a client cycling names cannot grow memory.
type certCache struct {
	mu    sync.Mutex
	max   int
	certs map[string]*tls.Certificate
}

func newCertCache(max int) *certCache {
	return &certCache{max: max, certs: map[string]*tls.Certificate{}}
}

func (c *certCache) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	c.mu.Lock()
	if cert, ok := c.certs[host]; ok {
		c.mu.Unlock()
		return cert, nil
	}
	c.mu.Unlock()
	cert, err := gen()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.certs) >= c.max {
		c.certs = map[string]*tls.Certificate{}
	}
	c.certs[host] = cert
	c.mu.Unlock()
	return cert, nil
}

// upstreamRoots is the system pool plus the PEM certificates in path.
func upstreamRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream_ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}
