package images

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/internal/testskip"
)

type tarEntry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	body     string
}

func readTar(t *testing.T, r io.Reader) map[string]tarEntry {
	t.Helper()
	out := map[string]tarEntry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		body, err := io.ReadAll(tr)
		require.NoError(t, err)
		out[h.Name] = tarEntry{typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, link: h.Linkname, body: string(body)}
	}
}

func TestWriteRootfsTarKeepsOwnersModesLinks(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, mode os.FileMode, body string) string {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	mk("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n")
	shadow := mk("etc/shadow", 0o640, "secret")
	mk("usr/bin/su", 0o755|os.ModeSetuid, "setuid")
	tool := mk("usr/bin/tool", 0o755, "tool")
	require.NoError(t, os.Link(tool, filepath.Join(root, "usr/bin/tool-alias")))
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	require.NoError(t, os.Symlink("/no/such/target", filepath.Join(root, "dangling")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "home/node"), 0o750))
	require.NoError(t, os.Chmod(filepath.Join(root, "home/node"), 0o750))
	require.NoError(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(shadow, 0, 42))
		require.NoError(t, os.Chown(filepath.Join(root, "home/node"), 1000, 1000))
	}

	var buf bytes.Buffer
	require.NoError(t, writeRootfsTar(&buf, root))
	got := readTar(t, &buf)

	assert.Equal(t, tarEntry{typ: tar.TypeReg, mode: 0o644, uid: os.Getuid(), gid: os.Getgid(), body: "root:x:0:0::/root:/bin/sh\n"}, got["etc/passwd"])
	assert.Equal(t, int64(0o4755), got["usr/bin/su"].mode, "setuid kept")
	assert.Equal(t, byte(tar.TypeDir), got["usr/bin/"].typ)
	assert.Equal(t, byte(tar.TypeSymlink), got["bin"].typ)
	assert.Equal(t, "usr/bin", got["bin"].link)
	assert.Equal(t, "/no/such/target", got["dangling"].link)
	assert.Equal(t, int64(0o750), got["home/node/"].mode)
	_, hasFifo := got["fifo"]
	assert.False(t, hasFifo, "fifos are skipped")
	_, hasRoot := got["./"]
	assert.False(t, hasRoot)

	// One of the two hard-linked names carries the data, the other links
	// to it.
	a, b := got["usr/bin/tool"], got["usr/bin/tool-alias"]
	if a.typ == tar.TypeLink {
		a, b = b, a
	}
	assert.Equal(t, byte(tar.TypeReg), a.typ)
	assert.Equal(t, "tool", a.body)
	assert.Equal(t, byte(tar.TypeLink), b.typ)
	assert.Contains(t, []string{"usr/bin/tool", "usr/bin/tool-alias"}, b.link)

	if os.Geteuid() == 0 {
		assert.Equal(t, 42, got["etc/shadow"].gid)
		assert.Equal(t, 1000, got["home/node/"].uid)
	}
	for name := range got {
		assert.False(t, strings.HasPrefix(name, "/"), name)
	}
}

func TestCleanRootfs(t *testing.T) {
	root := t.TempDir()
	files := []string{
		"var/cache/apt/archives/git_1.deb",
		"var/cache/apt/archives/lock",
		"var/cache/apt/pkgcache.bin",
		"var/lib/apt/lists/deb.example_dists_bookworm_InRelease",
		"var/lib/apt/lists/lock",
		"usr/share/doc/git/copyright",
		"usr/share/doc/git/changelog.gz",
		"usr/share/man/man1/git.1.gz",
		"usr/share/locale/de/LC_MESSAGES/git.mo",
		"usr/share/locale/locale.alias",
		"debootstrap/debpaths",
		"etc/passwd",
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	}
	require.NoError(t, cleanRootfs(root))
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(root, rel))
		return err == nil
	}
	for _, gone := range []string{
		"var/cache/apt/archives/git_1.deb", "var/cache/apt/pkgcache.bin",
		"var/lib/apt/lists/deb.example_dists_bookworm_InRelease",
		"usr/share/doc/git/changelog.gz", "usr/share/man/man1", "usr/share/locale/de", "debootstrap",
	} {
		assert.False(t, exists(gone), gone)
	}
	for _, kept := range []string{
		"var/cache/apt/archives/lock", "var/lib/apt/lists/lock", "usr/share/doc/git/copyright",
		"usr/share/locale/locale.alias", "etc/passwd", "etc/dpkg/dpkg.cfg.d/bot-bottle-slim",
	} {
		assert.True(t, exists(kept), kept)
	}
}

func TestMountsUnderAndSafeRemove(t *testing.T) {
	assert.Equal(t, "/a b\tc\\d", unescapeMountinfo(`/a\040b\011c\134d`))

	// /proc is mounted below /, so "/" has mounts below it and must never be
	// removed.
	mps, err := mountsUnder("/")
	require.NoError(t, err)
	assert.Contains(t, mps, "/proc")
	for i := 1; i < len(mps); i++ {
		assert.GreaterOrEqual(t, len(mps[i-1]), len(mps[i]), "deepest first")
	}

	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	mps, err = mountsUnder(dir)
	require.NoError(t, err)
	assert.Empty(t, mps)
	require.NoError(t, safeRemoveAll(dir))
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err))
	require.NoError(t, safeRemoveAll(dir), "missing is fine")

	if os.Geteuid() != 0 {
		return
	}
	// A leftover mount below the tree is detached before removal, and the
	// mounted filesystem's files survive.
	dir = filepath.Join(t.TempDir(), "rootfs")
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "precious"), []byte("keep"), 0o644))
	mnt := filepath.Join(dir, "dev")
	require.NoError(t, os.MkdirAll(mnt, 0o755))
	err = syscall.Mount(outside, mnt, "", syscall.MS_BIND, "")
	testskip.Unless(t, err == nil, "cannot bind mount here: %v", err)
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	require.NoError(t, safeRemoveAll(dir))
	data, err := os.ReadFile(filepath.Join(outside, "precious"))
	require.NoError(t, err)
	assert.Equal(t, "keep", string(data))
}

func TestLockFileSerialises(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	ctx := context.Background()
	unlock, err := lockFile(ctx, path, time.Second, io.Discard)
	require.NoError(t, err)

	// A second holder in the same process conflicts too (flock is per open
	// file), and gives up at its timeout.
	var log bytes.Buffer
	start := time.Now()
	_, err = lockFile(ctx, path, 300*time.Millisecond, &log)
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	assert.Contains(t, log.String(), "waiting for another image build")

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = lockFile(cctx, path, time.Minute, io.Discard)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := lockFile(ctx, path, 10*time.Second, io.Discard)
		if err == nil {
			got.Store(true)
			u()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	assert.False(t, got.Load(), "still held")
	unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter never got the lock")
	}
	assert.True(t, got.Load())
}

func TestHashes(t *testing.T) {
	assert.NotEqual(t, hashOf("ab", "c"), hashOf("a", "bc"), "parts are delimited")
	assert.Equal(t, hashOf("a", "b"), hashOf("a", "b"))
	h := baseHash()
	assert.Len(t, h, 64)
	assert.Equal(t, h, baseHash())

	saved := BasePackages
	t.Cleanup(func() { BasePackages = saved })
	BasePackages = append([]string{"zsh"}, saved...)
	assert.NotEqual(t, h, baseHash(), "the package list is an input")
	BasePackages = append(append([]string{}, saved[1:]...), saved[0])
	assert.Equal(t, h, baseHash(), "order is not")
}

func TestBasePackagesCoverWhatTheProjectRunsInside(t *testing.T) {
	for _, p := range []string{"ca-certificates", "git", "util-linux", "openssh-client", "openssh-server", "curl", "procps", "iproute2", "netcat-openbsd", "dnsutils"} {
		assert.Contains(t, BasePackages, p)
	}
}
