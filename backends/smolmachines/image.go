package smolmachines

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// ImageAPI is the part of the Docker Engine API that SaveImage uses;
// *client.Client implements it.
type ImageAPI interface {
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageSave(ctx context.Context, imageIDs []string, opts ...client.ImageSaveOption) (client.ImageSaveResult, error)
}

// DefaultImageCacheDir is where SaveImage keeps image tars:
// $XDG_CACHE_HOME/bot-bottle/smolvm, else ~/.cache/bot-bottle/smolvm.
func DefaultImageCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "bot-bottle", "smolvm")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".cache", "bot-bottle", "smolvm")
	}
	return filepath.Join(os.TempDir(), "bot-bottle-cache", "smolvm")
}

// lockPoll is how often SaveImage retries a cache lock held by another
// process; the wait as a whole is bounded by the caller's context.
const lockPoll = 100 * time.Millisecond

// SaveImage returns the path of a `docker save` tar of imageRef, which
// smolvm boots with `machine create --image`. Tars are cached by image ID
// as <cacheDir>/<id>.tar (cacheDir "" means DefaultImageCacheDir), so an
// unchanged image is exported once. Concurrent callers, in this process or
// others, are safe: one exports under a per-image lock while the others
// wait, and the tar appears under its final name only once complete and
// checked.
func SaveImage(ctx context.Context, api ImageAPI, imageRef, cacheDir string) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultImageCacheDir()
	}
	insp, err := api.ImageInspect(ctx, imageRef)
	if err != nil {
		return "", fmt.Errorf("save image %s: %w", imageRef, err)
	}
	id, err := imageIDHex(insp.ID)
	if err != nil {
		return "", fmt.Errorf("save image %s: %w", imageRef, err)
	}
	final := filepath.Join(cacheDir, id+".tar")
	if cached(final) {
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("save image %s: %w", imageRef, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, id+".lock"))
	if err != nil {
		return "", fmt.Errorf("save image %s: lock cache: %w", imageRef, err)
	}
	defer unlock()
	// Another process may have finished the export while we waited.
	if cached(final) {
		return final, nil
	}
	if err := exportImage(ctx, api, imageRef, id, cacheDir, final); err != nil {
		return "", fmt.Errorf("save image %s: %w", imageRef, err)
	}
	return final, nil
}

func cached(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// imageIDHex returns the hex digest of an image ID ("sha256:<hex>"),
// checked so that it is safe in a file name.
func imageIDHex(id string) (string, error) {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("unexpected image ID %q", id)
	}
	return hex, nil
}

func exportImage(ctx context.Context, api ImageAPI, imageRef, id, cacheDir, final string) error {
	tmp, err := os.CreateTemp(cacheDir, "."+id+".tar.tmp-*")
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Saving by reference (not ID) records the repo tag in manifest.json,
	// which is how smolvm names the image it unpacks.
	stream, err := api.ImageSave(ctx, []string{imageRef})
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, stream)
	stream.Close()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkSavedImage(tmp, id); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	committed = true
	return nil
}

// savedManifest is one entry of a `docker save` manifest.json.
type savedManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// checkSavedImage reads a saved tar's manifest.json and checks that it
// holds one image whose config digest is id: a truncated export has no
// manifest, and an image retagged between inspect and save has another
// digest, and neither may be cached under id.
func checkSavedImage(r io.Reader, id string) error {
	manifests, err := readSavedManifest(r)
	if err != nil {
		return err
	}
	if len(manifests) != 1 {
		return fmt.Errorf("saved image holds %d images, want 1", len(manifests))
	}
	if got := configDigest(manifests[0].Config); got != id {
		return fmt.Errorf("saved image has config %s, want %s (image changed during save?)", got, id)
	}
	return nil
}

// readSavedManifest returns the manifest.json entries of a `docker save`
// tar, reading it as a stream. The tar must be complete: its end is read to
// make sure it was not truncated.
func readSavedManifest(r io.Reader) ([]savedManifest, error) {
	tr := tar.NewReader(r)
	var manifests []savedManifest
	found := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read saved image: %w", err)
		}
		if path.Clean(hdr.Name) != "manifest.json" {
			continue
		}
		if err := json.NewDecoder(tr).Decode(&manifests); err != nil {
			return nil, fmt.Errorf("read saved image manifest.json: %w", err)
		}
		found = true
	}
	if !found {
		return nil, errors.New("saved image has no manifest.json")
	}
	return manifests, nil
}

// configDigest returns the hex digest named by a manifest's Config path:
// "<hex>.json" in the legacy layout, "blobs/sha256/<hex>" in the OCI one.
func configDigest(config string) string {
	return strings.TrimSuffix(path.Base(config), ".json")
}
