package images

import (
	"context"
	"fmt"
	"sort"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// Image is one image this package built, as found by label.
type Image struct {
	ID string
	// Tags are the image's repo:tag references, sorted.
	Tags    []string
	Kind    string
	Flavour string
	// Hash is the input hash the image was built from.
	Hash    string
	Created time.Time
	Size    int64
}

// Status lists every image carrying LabelImage, newest first.
func (b *Builder) Status(ctx context.Context) ([]Image, error) {
	res, err := b.Engine.Client().ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("label", LabelImage),
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Image, 0, len(res.Items))
	for _, it := range res.Items {
		tags := append([]string(nil), it.RepoTags...)
		sort.Strings(tags)
		out = append(out, Image{
			ID:      it.ID,
			Tags:    tags,
			Kind:    it.Labels[LabelImage],
			Flavour: it.Labels[LabelFlavour],
			Hash:    it.Labels[LabelHash],
			Created: time.Unix(it.Created, 0),
			Size:    it.Size,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Remove deletes an image, named by reference or ID, with all its tags. A
// missing image is not an error. Without force, an image a container still
// uses is refused by the engine; with force it is removed anyway.
func (b *Builder) Remove(ctx context.Context, refOrID string, force bool) error {
	cli := b.Engine.Client()
	ins, err := cli.ImageInspect(ctx, refOrID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("remove image %s: %w", refOrID, err)
	}
	if force || len(ins.RepoTags) <= 1 {
		_, err = cli.ImageRemove(ctx, ins.ID, client.ImageRemoveOptions{Force: force, PruneChildren: true})
	} else {
		// Removing an image with several tags by ID needs force; dropping
		// its tags one by one removes it with the last, unless in use.
		for _, tag := range ins.RepoTags {
			if _, err = cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
				break
			}
		}
	}
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("remove image %s: %w", refOrID, err)
}
