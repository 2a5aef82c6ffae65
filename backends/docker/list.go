package docker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/moby/moby/client"

	"github.com/bot-bottle/bot-bottle/backends"
)

// List returns every container (running or not), network and volume that
// carries all the selector labels, containers first, each kind sorted by
// name. A selector value of "" matches any value of that key. An empty
// selector is refused: it would match everything on the host.
func (e *Engine) List(ctx context.Context, selector backends.Labels) ([]backends.Resource, error) {
	if len(selector) == 0 {
		return nil, errors.New("list: refusing an empty label selector")
	}
	f := make(client.Filters)
	for k, v := range selector {
		// An empty value selects on the key alone (the engine's
		// "label=key" filter).
		if v == "" {
			f.Add("label", k)
		} else {
			f.Add("label", k+"="+v)
		}
	}

	var out []backends.Resource
	cs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, wrapErr(err, "list containers")
	}
	var part []backends.Resource
	for _, c := range cs.Items {
		part = append(part, backends.Resource{
			Kind:    "container",
			ID:      c.ID,
			Name:    trimName(c.Names),
			Labels:  c.Labels,
			State:   string(c.State),
			Created: time.Unix(c.Created, 0),
		})
	}
	out = append(out, sortByName(part)...)

	ns, err := e.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, wrapErr(err, "list networks")
	}
	part = nil
	for _, n := range ns.Items {
		part = append(part, backends.Resource{
			Kind:    "network",
			ID:      n.ID,
			Name:    n.Name,
			Labels:  n.Labels,
			Created: n.Created,
		})
	}
	out = append(out, sortByName(part)...)

	vs, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return nil, wrapErr(err, "list volumes")
	}
	part = nil
	for _, v := range vs.Items {
		created, _ := time.Parse(time.RFC3339Nano, v.CreatedAt)
		part = append(part, backends.Resource{
			Kind:    "volume",
			ID:      v.Name,
			Name:    v.Name,
			Labels:  v.Labels,
			Created: created,
		})
	}
	out = append(out, sortByName(part)...)
	return out, nil
}

func sortByName(rs []backends.Resource) []backends.Resource {
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs
}

// RemoveAll removes what List(selector) finds: containers first (they hold
// network endpoints), then networks, then volumes. It goes on past failures
// and returns them all joined.
func (e *Engine) RemoveAll(ctx context.Context, selector backends.Labels) error {
	rs, err := e.List(ctx, selector)
	if err != nil {
		return err
	}
	var errs []error
	for _, kind := range []string{"container", "network", "volume"} {
		for _, r := range rs {
			if r.Kind != kind {
				continue
			}
			var err error
			switch kind {
			case "container":
				err = e.RemoveContainer(ctx, r.ID)
			case "network":
				err = e.RemoveNetwork(ctx, r.ID)
			case "volume":
				err = e.RemoveVolume(ctx, r.ID)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, r.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
