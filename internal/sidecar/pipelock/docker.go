package pipelock

import (
	"context"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// EngineImageExists adapts a Docker Engine client to ImageExists.
func EngineImageExists(cli *client.Client) ImageExists {
	return func(ctx context.Context, ref string) (bool, error) {
		_, err := cli.ImageInspect(ctx, ref)
		if err == nil {
			return true, nil
		}
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
}
