// Package images builds the images bottles run on, tagged by a hash of
// everything that goes into them, so an image is built only when one of its
// inputs changed and otherwise found by tag in no time.
//
//   - base: a Debian rootfs made by debootstrap and imported into the engine.
//     The rootfs tarball is cached on disk, so an engine that lost its images
//     re-imports it without running debootstrap again.
//   - agent: base plus the user node and the claude program (the stub, or
//     Claude Code from npm).
//   - sidecar: base plus the static bottle binary.
//
// Agent and sidecar images are built through the Engine API by running a
// container from the base and committing it; no Dockerfile, builder or
// registry is involved.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends/docker"
)

// Image kinds, the values of LabelImage.
const (
	KindBase    = "base"
	KindAgent   = "agent"
	KindSidecar = "sidecar"
)

// Agent flavours.
const (
	// FlavourStub installs the claude stub (internal/claudestub): no
	// network, no account, records every invocation. The default.
	FlavourStub = "stub"
	// FlavourNPM installs Claude Code from the npm registry; building it
	// needs the Debian archive and the npm registry to be reachable.
	FlavourNPM = "npm"
)

// Labels on every image this package builds, so `bottle images` can find
// them without knowing their tags.
const (
	LabelImage   = "bot-bottle.image"
	LabelHash    = "bot-bottle.image-hash"
	LabelFlavour = "bot-bottle.image-flavour"
)

// BuildContainerPrefix starts the name of the throwaway container an agent
// or sidecar build runs, so a crashed build's container can be found.
const BuildContainerPrefix = "bot-bottle-build-"

// Repositories of the tags.
const (
	RepoBase    = "bot-bottle-base"
	RepoAgent   = "bot-bottle-agent"
	RepoSidecar = "bot-bottle-sidecar"
)

// EnvBaseImage names an existing local image to use instead of building the
// base.
const EnvBaseImage = "BOT_BOTTLE_BASE_IMAGE"

// Suite is the Debian release of the base image.
const Suite = "bookworm"

// Recipe versions: part of every hash, bumped whenever a build step changes
// so that images built by the old steps are not reused.
const (
	baseRecipe    = "base/2"
	agentRecipe   = "agent/4"
	sidecarRecipe = "sidecar/1"
)

// BasePackages are installed into the base rootfs on top of debootstrap's
// minbase: what provisioning runs in the guest (runuser, update-ca-
// certificates, git), what the git gate needs (git, ssh), and the network
// tools tests probe with (curl, nc, dig, ip).
var BasePackages = []string{
	"ca-certificates",
	"curl",
	"dnsutils",
	"git",
	"iproute2",
	"netcat-openbsd",
	"openssh-client",
	"openssh-server",
	"passwd",
	"procps",
	"util-linux",
}

// Paths inside the images.
const (
	ClaudePath    = "/usr/local/bin/claude"
	BottlePath    = "/usr/local/bin/bottle"
	AgentHome     = "/home/node"
	AgentWorkdir  = "/home/node/workspace"
	ClaudeStubLog = "/var/log/claude-stub.jsonl"
	// NPMPackage is what the npm flavour installs.
	NPMPackage = "@anthropic-ai/claude-code"
)

const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Builder ensures images exist, building only what is missing. Its zero
// values take defaults from the environment. A Builder may be used from
// several goroutines (given a Log that may); builds of one image are
// serialised, across processes too, by a lock file in CacheDir.
type Builder struct {
	Engine *docker.Engine
	// Log receives progress lines; nil discards them. It must be safe for
	// concurrent writes when the Builder is used from several goroutines.
	Log io.Writer
	// CacheDir holds rootfs tarballs and lock files; empty means
	// $XDG_CACHE_HOME/bot-bottle (~/.cache/bot-bottle).
	CacheDir string
	// Mirror is the Debian archive URL; empty means DebianMirror().
	Mirror string
	// BaseImage replaces the built base with an existing local image;
	// empty means $BOT_BOTTLE_BASE_IMAGE, and if that is empty too the
	// base is built.
	BaseImage string
	// ClaudeStub is the path of the claude stub binary (a static build of
	// ./internal/claudestub), required by the stub flavour.
	ClaudeStub string
	// LockTimeout bounds the wait for another process's build of the same
	// image; zero means 30 minutes.
	LockTimeout time.Duration

	// baseRepo replaces RepoBase, so tests can exercise the base build
	// path without touching the real base image.
	baseRepo string
	// noLatest leaves the :latest tags alone, so test-only builds do not
	// move them.
	noLatest bool
}

func (b *Builder) repoBase() string {
	if b.baseRepo != "" {
		return b.baseRepo
	}
	return RepoBase
}

func (b *Builder) log() io.Writer {
	if b.Log == nil {
		return io.Discard
	}
	return b.Log
}

func (b *Builder) logf(format string, args ...any) {
	fmt.Fprintf(b.log(), format, args...)
}

func (b *Builder) cacheDir() (string, error) {
	dir := b.CacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("image cache dir: %w", err)
		}
		dir = filepath.Join(base, "bot-bottle")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image cache dir: %w", err)
	}
	return dir, nil
}

func (b *Builder) lockTimeout() time.Duration {
	if b.LockTimeout > 0 {
		return b.LockTimeout
	}
	return 30 * time.Minute
}

func (b *Builder) baseOverride() string {
	if b.BaseImage != "" {
		return b.BaseImage
	}
	return os.Getenv(EnvBaseImage)
}

// hashOf hashes labelled parts so that no two different input lists can
// collide by concatenation.
func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func short(hash string) string { return hash[:12] }

// fileHashes memoises fileHash by path and file identity: a launch hashes
// the bottle binary (tens of MB) and the claude stub for the image tags,
// and a process running many launches (bench) need not read them again
// while they are unchanged.
var fileHashes sync.Map // fileKey -> string

type fileKey struct {
	path  string
	size  int64
	mtime int64
	dev   uint64
	ino   uint64
}

// fileHash returns the SHA-256 of a file's content.
func fileHash(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := fileKey{path: path, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.dev, key.ino = uint64(st.Dev), st.Ino
	}
	if h, ok := fileHashes.Load(key); ok {
		return h.(string), nil
	}
	h, err := hashFile(path)
	if err == nil {
		fileHashes.Store(key, h)
	}
	return h, err
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// baseHash identifies the built base by its inputs.
func baseHash() string {
	pkgs := slices.Clone(BasePackages)
	slices.Sort(pkgs)
	return hashOf(baseRecipe, Suite, "minbase", strings.Join(pkgs, ","))
}

// baseIdentity is what agent and sidecar hashes build on: the built base's
// input hash (known without the engine, so plans can name tags before
// anything is built), or the image ID of an override base.
func (b *Builder) baseIdentity(ctx context.Context) (ref, identity string, err error) {
	if o := b.baseOverride(); o != "" {
		res, err := b.Engine.Client().ImageInspect(ctx, o)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				return "", "", fmt.Errorf("%s=%s: no such local image (it must exist; nothing is pulled)", EnvBaseImage, o)
			}
			return "", "", fmt.Errorf("inspect base image %s: %w", o, err)
		}
		return o, "image:" + res.ID, nil
	}
	h := baseHash()
	return b.repoBase() + ":" + short(h), "base:" + h, nil
}

// BaseRef returns the base image reference without building it.
func (b *Builder) BaseRef(ctx context.Context) (string, error) {
	ref, _, err := b.baseIdentity(ctx)
	return ref, err
}

func (b *Builder) agentHash(ctx context.Context, flavour string) (string, error) {
	_, base, err := b.baseIdentity(ctx)
	if err != nil {
		return "", err
	}
	switch flavour {
	case FlavourStub:
		if b.ClaudeStub == "" {
			return "", errors.New("the stub agent image needs the claude stub binary (a static build of ./internal/claudestub); set Builder.ClaudeStub")
		}
		stub, err := fileHash(b.ClaudeStub)
		if err != nil {
			return "", fmt.Errorf("claude stub: %w", err)
		}
		return hashOf(agentRecipe, flavour, base, agentSetupScript, trustStoreScript, ClaudePath, stub), nil
	case FlavourNPM:
		return hashOf(agentRecipe, flavour, base, agentSetupScript, npmInstallScript, trustStoreScript, NPMPackage), nil
	default:
		return "", fmt.Errorf("unknown agent flavour %q (want %q or %q)", flavour, FlavourStub, FlavourNPM)
	}
}

// AgentRef returns the agent image reference of a flavour without building
// it.
func (b *Builder) AgentRef(ctx context.Context, flavour string) (string, error) {
	h, err := b.agentHash(ctx, normFlavour(flavour))
	if err != nil {
		return "", err
	}
	return RepoAgent + ":" + short(h), nil
}

func normFlavour(f string) string {
	if f == "" {
		return FlavourStub
	}
	return f
}

func (b *Builder) sidecarHash(ctx context.Context, bottleBinary string) (string, error) {
	_, base, err := b.baseIdentity(ctx)
	if err != nil {
		return "", err
	}
	bin, err := fileHash(bottleBinary)
	if err != nil {
		return "", fmt.Errorf("bottle binary: %w", err)
	}
	return hashOf(sidecarRecipe, base, BottlePath, bin), nil
}

// Refs are the image references a launch uses.
type Refs struct {
	Base, Agent, Sidecar string
}

// Refs computes the base, agent and sidecar references without building
// anything, for plans. Only an overridden base needs the engine (its image
// ID is an input).
func (b *Builder) Refs(ctx context.Context, flavour, bottleBinary string) (Refs, error) {
	var r Refs
	var err error
	if r.Base, err = b.BaseRef(ctx); err != nil {
		return Refs{}, err
	}
	if r.Agent, err = b.AgentRef(ctx, flavour); err != nil {
		return Refs{}, err
	}
	if r.Sidecar, err = b.SidecarRef(ctx, bottleBinary); err != nil {
		return Refs{}, err
	}
	return r, nil
}

// SidecarRef returns the sidecar image reference for a bottle binary without
// building it.
func (b *Builder) SidecarRef(ctx context.Context, bottleBinary string) (string, error) {
	h, err := b.sidecarHash(ctx, bottleBinary)
	if err != nil {
		return "", err
	}
	return RepoSidecar + ":" + short(h), nil
}

// EnsureBase makes sure the base image exists and returns its reference.
func (b *Builder) EnsureBase(ctx context.Context) (string, error) {
	if o := b.baseOverride(); o != "" {
		ref, _, err := b.baseIdentity(ctx)
		return ref, err
	}
	h := baseHash()
	ref := b.repoBase() + ":" + short(h)
	if ok, err := b.Engine.ImageExists(ctx, ref); err != nil || ok {
		return ref, err
	}
	dir, err := b.cacheDir()
	if err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "base-"+short(h)+".lock"), b.lockTimeout(), b.log())
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have built it while we waited.
	if ok, err := b.Engine.ImageExists(ctx, ref); err != nil || ok {
		return ref, err
	}
	start := time.Now()
	tarball := filepath.Join(dir, "base-"+short(h)+".tar")
	if _, err := os.Stat(tarball); err != nil {
		b.logf("building base rootfs %s (takes minutes, once)\n", ref)
		if err := b.buildRootfsTarball(ctx, tarball); err != nil {
			return "", fmt.Errorf("base image %s: %w", ref, err)
		}
		b.pruneTarballs(dir, tarball)
	} else {
		b.logf("importing base image %s from the cached %s\n", ref, tarball)
	}
	if err := b.importTarball(ctx, tarball, ref, h); err != nil {
		return "", fmt.Errorf("base image %s: %w", ref, err)
	}
	if err := b.tagLatest(ctx, ref); err != nil {
		return "", err
	}
	b.logf("base image %s ready in %s\n", ref, time.Since(start).Round(100*time.Millisecond))
	return ref, nil
}

// pruneTarballs removes cached base tarballs other than keep: each is a few
// hundred megabytes and belongs to an older recipe or package list. A
// process still importing one keeps its open file.
func (b *Builder) pruneTarballs(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "base-*.tar"))
	for _, p := range old {
		if p == keep {
			continue
		}
		if err := os.Remove(p); err == nil {
			b.logf("removed the stale cached rootfs %s\n", p)
		}
	}
}

// importTarball imports a rootfs tarball as ref.
func (b *Builder) importTarball(ctx context.Context, tarball, ref, hash string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := b.Engine.Client().ImageImport(ctx,
		client.ImageImportSource{Source: f, SourceName: "-"},
		ref,
		client.ImageImportOptions{
			Message: "bot-bottle base (" + Suite + " minbase)",
			Changes: []string{
				"ENV " + imagePath,
				"ENV LANG=C.UTF-8",
				`CMD ["/bin/bash"]`,
				"LABEL " + LabelImage + "=" + KindBase,
				"LABEL " + LabelHash + "=" + hash,
			},
		})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer rc.Close()
	return drainJSONMessages(rc)
}

// drainJSONMessages reads an engine progress stream to its end and returns
// the first error it reports.
func drainJSONMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading engine progress: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// tagLatest points repo:latest at ref, for people looking at `docker
// images`; nothing in the project runs :latest.
func (b *Builder) tagLatest(ctx context.Context, ref string) error {
	if b.noLatest {
		return nil
	}
	repo, _, _ := strings.Cut(ref, ":")
	return b.tag(ctx, ref, repo+":latest")
}

func (b *Builder) tag(ctx context.Context, source, target string) error {
	if _, err := b.Engine.Client().ImageTag(ctx, client.ImageTagOptions{Source: source, Target: target}); err != nil {
		return fmt.Errorf("tag %s as %s: %w", source, target, err)
	}
	return nil
}
