package images

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// debootstrapWaitDelay is how long a cancelled debootstrap gets to exit
// before its pipes are closed on it.
const debootstrapWaitDelay = 10 * time.Second

// buildRootfsTarball debootstraps the base rootfs into a scratch directory
// beside dst and streams it into the tarball dst (written under a temporary
// name and renamed, so a crash never leaves a truncated cache entry).
func (b *Builder) buildRootfsTarball(ctx context.Context, dst string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("building the base image runs debootstrap, which needs root; run once as root or set %s to an existing image", EnvBaseImage)
	}
	mirror := b.Mirror
	if mirror == "" {
		m, err := DebianMirror()
		if err != nil {
			return err
		}
		mirror = m
	}
	if err := checkMirrorURL(mirror); err != nil {
		return err
	}
	debootstrap, err := ensureDebootstrap(ctx, b.log())
	if err != nil {
		return err
	}

	target := strings.TrimSuffix(dst, ".tar") + ".rootfs"
	// We hold the build lock, so a leftover scratch tree is a dead build's.
	if err := safeRemoveAll(target); err != nil {
		return err
	}
	defer func() {
		if err := safeRemoveAll(target); err != nil {
			b.logf("warning: %v\n", err)
		}
	}()

	b.logf("debootstrap %s (%s) from %s\n", Suite, strings.Join(BasePackages, ","), mirror)
	start := time.Now()
	argv := []string{
		debootstrap,
		"--variant=minbase",
		"--components=main",
		"--include=" + strings.Join(BasePackages, ","),
		Suite, target, mirror,
	}
	if err := runLogged(ctx, b.log(), argv...); err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	b.logf("debootstrap finished in %s\n", time.Since(start).Round(time.Second))
	if err := unmountUnder(target); err != nil {
		return err
	}
	if err := cleanRootfs(target); err != nil {
		return err
	}

	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = writeRootfsTar(bw, target)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rootfs tarball: %w", err)
	}
	return nil
}

// ensureDebootstrap returns the debootstrap path, installing the package
// with apt-get when it is missing (refreshing the package lists once if the
// first install fails).
func ensureDebootstrap(ctx context.Context, log io.Writer) (string, error) {
	if p, err := exec.LookPath("debootstrap"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/debootstrap"); err == nil {
		return "/usr/sbin/debootstrap", nil
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil {
		return "", errors.New("debootstrap is not installed and there is no apt-get to install it")
	}
	install := []string{aptGet, "install", "-y", "--no-install-recommends", "debootstrap"}
	fmt.Fprintln(log, "installing debootstrap")
	if err := runLogged(ctx, log, install...); err != nil {
		if err := runLogged(ctx, log, aptGet, "update"); err != nil {
			return "", fmt.Errorf("apt-get update: %w", err)
		}
		if err := runLogged(ctx, log, install...); err != nil {
			return "", fmt.Errorf("installing debootstrap: %w", err)
		}
	}
	if p, err := exec.LookPath("debootstrap"); err == nil {
		return p, nil
	}
	return "/usr/sbin/debootstrap", nil
}

// runLogged runs argv (no shell) with its output sent to log.
func runLogged(ctx context.Context, log io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	cmd.WaitDelay = debootstrapWaitDelay
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(argv[0]), err)
	}
	return nil
}

// slimDpkgConfig keeps packages installed later (the npm flavour's) from
// bringing back what cleanRootfs removes; copyright files stay.
const slimDpkgConfig = `path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
`

// cleanRootfs drops what the image does not need, about a quarter of its
// size: downloaded packages, apt lists and binary caches (apt-get update
// restores them), documentation and translations (the image runs with
// LANG=C.UTF-8), debootstrap's own leftovers.
func cleanRootfs(root string) error {
	for _, pattern := range []string{
		"var/cache/apt/archives/*.deb",
		"var/cache/apt/*.bin",
		"var/lib/apt/lists/*_*",
		"debootstrap",
		"var/log/bootstrap.log",
		"usr/share/man/*",
		"usr/share/info/*",
	} {
		if err := removeGlob(root, pattern, nil); err != nil {
			return err
		}
	}
	if err := removeGlob(root, "usr/share/locale/*", func(p string) bool { return filepath.Base(p) == "locale.alias" }); err != nil {
		return err
	}
	// Keep each package's copyright file, drop the rest of its docs.
	docs, err := filepath.Glob(filepath.Join(root, "usr/share/doc/*"))
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := removeGlob(d, "*", func(p string) bool { return filepath.Base(p) == "copyright" }); err != nil {
			return err
		}
	}
	cfg := filepath.Join(root, "etc/dpkg/dpkg.cfg.d/bot-bottle-slim")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		return err
	}
	return os.WriteFile(cfg, []byte(slimDpkgConfig), 0o644)
}

// removeGlob removes what pattern matches under root, except what keep
// accepts.
func removeGlob(root, pattern string, keep func(string) bool) error {
	matches, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if keep != nil && keep(m) {
			continue
		}
		if err := os.RemoveAll(m); err != nil {
			return fmt.Errorf("clean rootfs: %w", err)
		}
	}
	return nil
}

// mountsUnder lists mount points strictly below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(filepath.Clean(dir), "/") + "/"
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// unmountUnder detaches whatever a failed or killed debootstrap left
// mounted inside its target (proc, sys, device binds).
func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// safeRemoveAll removes a scratch rootfs, but only once nothing is mounted
// below it: removing through a leftover bind mount would delete host files.
func safeRemoveAll(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if mps, err := mountsUnder(dir); err != nil || len(mps) > 0 {
		return fmt.Errorf("not removing %s: still mounted below it: %v %v", dir, mps, err)
	}
	return os.RemoveAll(dir)
}

type inode struct{ dev, ino uint64 }

// writeRootfsTar streams root as a tar archive whose names are relative to
// root. Owners (numeric), modes, symlinks and hard links are kept; device
// nodes, fifos and sockets are skipped (the engine provides /dev); other
// filesystems mounted below root are not entered.
func writeRootfsTar(w io.Writer, root string) error {
	rootInfo, err := os.Lstat(root)
	if err != nil {
		return err
	}
	rootDev := rootInfo.Sys().(*syscall.Stat_t).Dev
	tw := tar.NewWriter(w)
	seen := map[inode]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		if fi.IsDir() && uint64(st.Dev) != uint64(rootDev) {
			return fs.SkipDir
		}
		link := ""
		mode := fi.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case mode.IsDir(), mode.IsRegular():
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if mode.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		// Names would come from the host's user database, not the
		// rootfs's; the numeric ids are what matters.
		hdr.Uname, hdr.Gname = "", ""
		if mode.IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := seen[key]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				hdr.Size = 0
				return tw.WriteHeader(hdr)
			}
			seen[key] = name
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !mode.IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
