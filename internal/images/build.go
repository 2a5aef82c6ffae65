package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// buildTimeout bounds the build container's run. The npm flavour downloads
// packages; the stub flavour takes a second.
const buildTimeout = 20 * time.Minute

// agentSetupScript creates the agent user and the places provisioning
// writes to. It is a constant: no value reaches it from outside.
const agentSetupScript = `set -eu
groupadd --gid 1000 node
useradd --uid 1000 --gid 1000 --home-dir /home/node --create-home --shell /bin/bash node
mkdir -p /home/node/workspace /home/node/.claude
chown -R node:node /home/node
touch /var/log/claude-stub.jsonl
chmod 0666 /var/log/claude-stub.jsonl
# The base's openssh-server generated host keys at install time; the agent
# runs no sshd and its image must hold no private key.
rm -f /etc/ssh/ssh_host_*
`

// trustStoreScript runs last in every agent build. It gathers the
// distribution's trust anchors into one file that /etc/ca-certificates.conf
// lists alone, so that update-ca-certificates, which every launch runs to
// add the bottle's CA, handles two certificates instead of some 150: it
// starts several processes per certificate and per link in /etc/ssl/certs,
// which cost seconds per launch, most of all on fuse-overlayfs. The bundle
// (/etc/ssl/certs/ca-certificates.crt) stays byte for byte the same, as the
// cmp checks; what goes is the per-anchor links and hash links in
// /etc/ssl/certs. Clients find the anchors through the bundle: it is
// OpenSSL's and GnuTLS's default CA file, and the agent's SSL_CERT_FILE and
// GIT_SSL_CAINFO name it.
const trustStoreScript = `set -eu
mkdir -p /usr/share/ca-certificates/bot-bottle
cp /etc/ssl/certs/ca-certificates.crt /usr/share/ca-certificates/bot-bottle/system.crt
echo bot-bottle/system.crt > /etc/ca-certificates.conf
update-ca-certificates --fresh
cmp /etc/ssl/certs/ca-certificates.crt /usr/share/ca-certificates/bot-bottle/system.crt
`

// npmInstallScript installs Claude Code from npm on top of the agent setup.
const npmInstallScript = `set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends nodejs npm
npm install -g --no-audit --no-fund @anthropic-ai/claude-code
test -x /usr/local/bin/claude
apt-get clean
rm -rf /var/lib/apt/lists/*
`

// buildSpec describes an image made by running a container from a parent
// image and committing it.
type buildSpec struct {
	kind    string
	flavour string
	hash    string
	ref     string
	parent  string
	// copies maps host files to image paths; they must be executable
	// when they land in a bin directory.
	copies map[string]string
	// script, when set, runs under /bin/sh -c in the build container.
	script  string
	network bool
	cmd     []string
	workdir string
}

// EnsureAgent makes sure the agent image of a flavour ("" means stub) exists
// and returns its reference.
func (b *Builder) EnsureAgent(ctx context.Context, flavour string) (string, error) {
	flavour = normFlavour(flavour)
	h, err := b.agentHash(ctx, flavour)
	if err != nil {
		return "", err
	}
	parent, err := b.EnsureBase(ctx)
	if err != nil {
		return "", err
	}
	spec := buildSpec{
		kind:    KindAgent,
		flavour: flavour,
		hash:    h,
		ref:     RepoAgent + ":" + short(h),
		parent:  parent,
		script:  agentSetupScript,
		cmd:     []string{"/bin/bash"},
		workdir: AgentWorkdir,
	}
	switch flavour {
	case FlavourStub:
		spec.copies = map[string]string{b.ClaudeStub: ClaudePath}
	case FlavourNPM:
		spec.script += npmInstallScript
		spec.network = true
	}
	spec.script += trustStoreScript
	return b.ensureBuilt(ctx, spec)
}

// EnsureSidecar makes sure the sidecar image for a bottle binary exists and
// returns its reference.
func (b *Builder) EnsureSidecar(ctx context.Context, bottleBinary string) (string, error) {
	h, err := b.sidecarHash(ctx, bottleBinary)
	if err != nil {
		return "", err
	}
	parent, err := b.EnsureBase(ctx)
	if err != nil {
		return "", err
	}
	return b.ensureBuilt(ctx, buildSpec{
		kind:    KindSidecar,
		hash:    h,
		ref:     RepoSidecar + ":" + short(h),
		parent:  parent,
		copies:  map[string]string{bottleBinary: BottlePath},
		cmd:     []string{BottlePath},
		workdir: "/",
	})
}

func (b *Builder) ensureBuilt(ctx context.Context, s buildSpec) (string, error) {
	if ok, err := b.Engine.ImageExists(ctx, s.ref); err != nil || ok {
		return s.ref, err
	}
	dir, err := b.cacheDir()
	if err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, s.kind+"-"+short(s.hash)+".lock"), b.lockTimeout(), b.log())
	if err != nil {
		return "", err
	}
	defer unlock()
	if ok, err := b.Engine.ImageExists(ctx, s.ref); err != nil || ok {
		return s.ref, err
	}
	start := time.Now()
	b.logf("building %s image %s\n", s.kind, s.ref)
	if err := b.commitBuild(ctx, s); err != nil {
		if s.flavour == FlavourNPM {
			return "", fmt.Errorf("%s image %s (the npm flavour needs the Debian archive and the npm registry): %w", s.kind, s.ref, err)
		}
		return "", fmt.Errorf("%s image %s: %w", s.kind, s.ref, err)
	}
	if err := b.tagLatest(ctx, s.ref); err != nil {
		return "", err
	}
	b.logf("%s image %s ready in %s\n", s.kind, s.ref, time.Since(start).Round(100*time.Millisecond))
	return s.ref, nil
}

func (b *Builder) commitBuild(ctx context.Context, s buildSpec) (err error) {
	for host, guest := range s.copies {
		fi, err := os.Stat(host)
		if err != nil {
			return err
		}
		if strings.Contains(guest, "/bin/") && fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", host)
		}
	}
	cli := b.Engine.Client()
	// The build container carries no labels: a commit merges them into the
	// image, and from there into every container run from it. Its name
	// prefix marks it instead.
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := fmt.Sprintf("%s%s-%s-%s", BuildContainerPrefix, s.kind, short(s.hash), hex.EncodeToString(suffix[:]))
	cfg := &container.Config{
		Image: s.parent,
		User:  "root",
		Cmd:   []string{"/bin/true"},
	}
	if s.script != "" {
		// The script goes in Cmd, not Entrypoint: a commit inherits the
		// container's entrypoint unless one is given, but not its Cmd
		// when a Cmd is given.
		cfg.Cmd = []string{"/bin/sh", "-c", s.script}
	}
	host := &container.HostConfig{NetworkMode: "none"}
	if s.network {
		host.NetworkMode = "bridge"
	}
	created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host})
	if err != nil {
		return fmt.Errorf("create build container: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if rerr := b.Engine.RemoveContainer(rctx, created.ID); rerr != nil && err == nil {
			err = rerr
		}
	}()
	for host, guest := range s.copies {
		if err := b.Engine.CopyFile(ctx, created.ID, host, guest); err != nil {
			return err
		}
	}
	if s.script != "" {
		rctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		if err := b.Engine.StartContainer(rctx, created.ID); err != nil {
			return err
		}
		code, err := b.Engine.Wait(rctx, created.ID)
		if err != nil {
			return err
		}
		logs, _ := b.Engine.Logs(context.WithoutCancel(ctx), created.ID)
		if code != 0 {
			return fmt.Errorf("build script exited %d:\n%s", code, tail(logs, 40))
		}
	}
	labels := map[string]string{LabelImage: s.kind, LabelHash: s.hash}
	if s.flavour != "" {
		labels[LabelFlavour] = s.flavour
	}
	_, err = cli.ContainerCommit(ctx, created.ID, client.ContainerCommitOptions{
		Reference: s.ref,
		Comment:   "bot-bottle " + s.kind,
		Config: &container.Config{
			User:       "root",
			Env:        []string{imagePath, "LANG=C.UTF-8"},
			WorkingDir: s.workdir,
			// Setting Cmd keeps the commit from inheriting the build
			// container's command (the build script).
			Cmd:    s.cmd,
			Labels: labels,
		},
	})
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
