// Package tartree archives a host directory tree for copying into a guest,
// the same way for every backend: entries owned by root (uid and gid 0, no
// names), so a root tar in the guest extracts the same owners whatever the
// host user is; modes and modification times kept; symlinks archived as
// links, never followed (except a walk root that is itself a link);
// sockets, named pipes and devices skipped (a .git directory can hold a
// live fsmonitor socket, which means nothing in the guest).
package tartree

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"
)

// Write adds hostDir to tw as entries under the directory name top. It does
// not close tw.
func Write(tw *tar.Writer, hostDir, top string) error {
	st, err := os.Stat(hostDir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", hostDir)
	}
	return filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(hostDir, p)
		if err != nil {
			return err
		}
		name := path.Join(top, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		// The walk root may itself be a symlink to a directory (os.Stat
		// above followed it); archive it as the directory it points to.
		if p == hostDir {
			info = st
		}
		var link string
		switch mode := info.Mode(); {
		case mode.IsDir(), mode.IsRegular():
		case mode&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		// Host access and change times mean nothing in the guest.
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		// A file that grew since it was stat'ed must not overrun its
		// header: copy exactly the size recorded.
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
}
