package gitgate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bot-bottle/bot-bottle/internal/atomicfile"
)

// Options are the knobs outside the JSON config.
type Options struct {
	// Logger receives JSON lines; stdout when nil.
	Logger *slog.Logger
	// Self is the bottle binary the hooks re-invoke; os.Executable() when
	// empty. Tests point it at the test binary.
	Self string
	// ReadyTimeout bounds the wait for git daemon to listen (10s).
	ReadyTimeout time.Duration
}

// Server runs git daemon over the mirrors.
type Server struct {
	cfg  Config
	opts Options
	log  *slog.Logger
	addr string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stopped sync.Once
}

// New validates the config; Start does the work.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	if opts.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("git-gate: locate own binary: %w", err)
		}
		opts.Self = self
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 10 * time.Second
	}
	abs, err := filepath.Abs(opts.Self)
	if err != nil {
		return nil, err
	}
	opts.Self = abs
	return &Server{cfg: cfg, opts: opts, log: opts.Logger, done: make(chan struct{})}, nil
}

// Start prepares the mirrors (fetching each upstream), starts git daemon
// and logs "ready" once it listens.
func (s *Server) Start(ctx context.Context) error {
	c := &s.cfg
	if err := os.MkdirAll(c.gateDir(), 0o700); err != nil {
		return fmt.Errorf("git-gate: %w", err)
	}
	// The hooks read the config from this private copy.
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.gateDir(), "config.json")
	if err := atomicfile.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	for name, script := range map[string]string{"access-hook": accessHookScript, "git-ssh": gitSSHScript} {
		if err := atomicfile.WriteFile(filepath.Join(c.gateDir(), name), []byte(script), 0o755); err != nil {
			return err
		}
	}
	// Hooks and the ssh wrapper find the binary and config through the
	// environment, which the gate's own git commands need too.
	c.self, c.cfgPath = s.opts.Self, cfgPath
	var mirrors []string
	for i := range c.Repos {
		r := &c.Repos[i]
		t0 := time.Now()
		if err := c.initMirror(ctx, r); err != nil {
			return fmt.Errorf("git-gate: mirror %s: %w", r.Name, err)
		}
		s.log.Info("mirror ready", "repo", r.Name, "duration_ms", time.Since(t0).Milliseconds())
		mirrors = append(mirrors, c.MirrorPath(r.Name))
	}

	host, port, _ := net.SplitHostPort(c.Listen)
	if port == "0" {
		p, err := freePort(host)
		if err != nil {
			return err
		}
		port = strconv.Itoa(p)
	}
	args := []string{"daemon",
		"--reuseaddr", "--verbose", "--log-destination=stderr",
		"--base-path=" + c.BasePath, "--strict-paths",
		"--enable=receive-pack",
		"--access-hook=" + filepath.Join(c.gateDir(), "access-hook"),
		"--informative-errors",
		"--init-timeout=30", "--timeout=600", "--max-connections=32",
		"--port=" + port,
	}
	if host != "" {
		args = append(args, "--listen="+host)
	}
	args = append(args, "--")
	args = append(args, mirrors...)
	cmd := exec.Command(c.git(), args...)
	cmd.Dir = c.BasePath
	cmd.Env = c.gitEnv(nil)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git-gate: start git daemon: %w", err)
	}
	s.cmd = cmd
	ready := make(chan struct{})
	var readyOnce sync.Once
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 4096), 64*1024)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "Ready to rumble") {
				readyOnce.Do(func() { close(ready) })
			}
			s.log.Info("git-daemon", "line", line)
		}
	}()
	go func() {
		<-logDone
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	listenAddr := net.JoinHostPort(host, port)
	if host == "" {
		host = "127.0.0.1"
	}
	s.addr = net.JoinHostPort(host, port)
	select {
	case <-ready:
	case <-s.done:
		return fmt.Errorf("git-gate: git daemon exited during start: %v", s.waitErr)
	case <-time.After(s.opts.ReadyTimeout):
		_ = s.Shutdown(context.Background())
		return errors.New("git-gate: git daemon did not start listening in time")
	}
	s.log.Info("ready", "listen", listenAddr, "repos", len(c.Repos))
	return nil
}

// Addr is a dialable address of the daemon after Start.
func (s *Server) Addr() string { return s.addr }

// Done is closed when git daemon has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is git daemon's exit status after Done.
func (s *Server) Err() error { return s.waitErr }

// Shutdown sends SIGTERM to the daemon's process group and waits until
// ctx ends (at most 10s), then kills what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.stopped.Do(func() { _ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM) })
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-s.done:
	case <-ctx.Done():
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	// Hooks or upload-packs still running in the group go too.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	return nil
}

func freePort(host string) (int, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
