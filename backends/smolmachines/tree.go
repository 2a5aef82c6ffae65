package smolmachines

import (
	"archive/tar"
	"io"

	"github.com/bot-bottle/bot-bottle/internal/tartree"
)

// writeTree writes hostDir to w as a tar whose top directory is called top
// (see tartree for owners, links and what is skipped); steps chown
// afterwards, as `smolvm machine cp` lands single files as root too.
func writeTree(w io.Writer, hostDir, top string) error {
	tw := tar.NewWriter(w)
	if err := tartree.Write(tw, hostDir, top); err != nil {
		return err
	}
	return tw.Close()
}
