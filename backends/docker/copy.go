package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/internal/tartree"
)

// errCopyAborted ends the archive writer once the engine has stopped
// reading.
var errCopyAborted = errors.New("copy aborted")

// maxGuestDepth bounds the walk up a guest path looking for an existing
// ancestor.
const maxGuestDepth = 64

// CopyFile copies one host file (symlinks followed) to an absolute path in
// the container, creating missing parent directories (root, 0755). The file
// keeps its host permission bits and lands owned by root. It works on created
// and stopped containers too.
func (e *Engine) CopyFile(ctx context.Context, nameOrID, hostPath, guestPath string) error {
	f, err := os.Open(hostPath)
	if err != nil {
		return fmt.Errorf("copy %s: %w", hostPath, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("copy %s: %w", hostPath, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copy %s: not a regular file", hostPath)
	}
	return e.copyTar(ctx, nameOrID, guestPath, func(tw *tar.Writer, name string) error {
		return writeFileEntry(tw, name, fi, f)
	})
}

// CopyDir copies a host directory tree so that the directory itself becomes
// guestPath, creating missing parents (root, 0755). Permission bits are kept,
// everything lands owned by root. Symlinks inside the tree are copied as
// symlinks and never followed, so nothing outside the tree is read; sockets,
// fifos and devices are skipped. Existing guest files are overwritten, other
// existing guest files are left alone.
func (e *Engine) CopyDir(ctx context.Context, nameOrID, hostDir, guestPath string) error {
	root, err := filepath.EvalSymlinks(hostDir)
	if err != nil {
		return fmt.Errorf("copy %s: %w", hostDir, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("copy %s: %w", hostDir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("copy %s: not a directory", hostDir)
	}
	return e.copyTar(ctx, nameOrID, guestPath, func(tw *tar.Writer, name string) error {
		return tartree.Write(tw, root, name)
	})
}

// copyTar streams a tar archive into the container. The archive is extracted
// at the deepest existing ancestor of guestPath and carries entries only for
// the directories that are missing, so existing directories keep their owner
// and mode. payload writes the entries for guestPath itself, named name.
func (e *Engine) copyTar(ctx context.Context, nameOrID, guestPath string, payload func(tw *tar.Writer, name string) error) error {
	if !path.IsAbs(guestPath) || path.Clean(guestPath) != guestPath || guestPath == "/" {
		return fmt.Errorf("copy to %s: guest path must be absolute, clean and not /", guestPath)
	}
	anchor, missing, err := e.existingAncestor(ctx, nameOrID, path.Dir(guestPath))
	if err != nil {
		return err
	}

	pr, pw := io.Pipe()
	writeErr := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := func() error {
			prefix := ""
			now := time.Now()
			for _, d := range missing {
				prefix = path.Join(prefix, d)
				if err := tw.WriteHeader(&tar.Header{
					Typeflag: tar.TypeDir,
					Name:     prefix + "/",
					Mode:     0o755,
					ModTime:  now,
				}); err != nil {
					return err
				}
			}
			if err := payload(tw, path.Join(prefix, path.Base(guestPath))); err != nil {
				return err
			}
			return tw.Close()
		}()
		writeErr <- err
		pw.CloseWithError(err)
	}()
	_, copyErr := e.cli.CopyToContainer(ctx, nameOrID, client.CopyToContainerOptions{
		DestinationPath: anchor,
		Content:         pr,
	})
	// Unblock the writer if the engine stopped reading early (it may
	// ignore the archive's trailing blocks).
	pr.CloseWithError(errCopyAborted)
	werr := <-writeErr
	if errors.Is(werr, errCopyAborted) {
		werr = nil
	}
	if werr != nil {
		// A host-side failure (an unreadable file) explains a broken
		// upload better than the engine's view of it.
		return fmt.Errorf("copy to %s:%s: %w", nameOrID, guestPath, werr)
	}
	return wrapErr(copyErr, "copy to %s:%s", nameOrID, guestPath)
}

// existingAncestor walks up from dir to the first path that exists in the
// container and returns it with the names of the missing directories below
// it, outermost first.
func (e *Engine) existingAncestor(ctx context.Context, nameOrID, dir string) (string, []string, error) {
	var missing []string
	for range maxGuestDepth {
		if dir == "/" {
			return dir, missing, nil
		}
		_, err := e.cli.ContainerStatPath(ctx, nameOrID, client.ContainerStatPathOptions{Path: dir})
		if err == nil {
			return dir, missing, nil
		}
		if !cerrdefs.IsNotFound(err) {
			return "", nil, wrapErr(err, "stat %s:%s", nameOrID, dir)
		}
		// A missing container also answers not-found; tell it apart from
		// a missing directory.
		if _, ierr := e.inspect(ctx, nameOrID); ierr != nil {
			return "", nil, ierr
		}
		missing = append([]string{path.Base(dir)}, missing...)
		dir = path.Dir(dir)
	}
	return "", nil, fmt.Errorf("copy to %s: guest path deeper than %d levels", dir, maxGuestDepth)
}

// rootOwned strips host ownership so every entry lands as root:root.
func rootOwned(hdr *tar.Header) {
	hdr.Uid, hdr.Gid = 0, 0
	hdr.Uname, hdr.Gname = "", ""
}

func writeFileEntry(tw *tar.Writer, name string, fi fs.FileInfo, r io.Reader) error {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	rootOwned(hdr)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// CopyN holds the size declared in the header even if the file grows
	// while it is read; a file that shrank fails loudly.
	if _, err := io.CopyN(tw, r, hdr.Size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
