package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Labels the simulator puts on its containers, instead of the machine's
// own (see start): labelSim marks every simulator container, labelState
// says which state directory (so one test's cleanup removes its containers
// only) and labelMachine names the machine.
const (
	labelSim     = "smolvmsim"
	labelState   = "smolvmsim.state"
	labelMachine = "smolvmsim.machine"
)

func containerName(machine string) string { return "smolvmsim-" + machine }

type engine struct {
	api *client.Client
}

func newEngine() (*engine, error) {
	api, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	return &engine{api: api}, nil
}

// savedManifest is one entry of a `docker save` manifest.json.
type savedManifest struct {
	Config   string
	RepoTags []string
}

// readManifest reads manifest.json from a `docker save` tar.
func readManifest(tarPath string) (savedManifest, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return savedManifest{}, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return savedManifest{}, fmt.Errorf("%s: not an image archive (no manifest.json)", tarPath)
		}
		if err != nil {
			return savedManifest{}, fmt.Errorf("%s: not an image archive: %w", tarPath, err)
		}
		if path.Clean(hdr.Name) != "manifest.json" {
			continue
		}
		var ms []savedManifest
		if err := json.NewDecoder(tr).Decode(&ms); err != nil {
			return savedManifest{}, fmt.Errorf("%s: manifest.json: %w", tarPath, err)
		}
		if len(ms) != 1 {
			return savedManifest{}, fmt.Errorf("%s: archive holds %d images, want 1", tarPath, len(ms))
		}
		return ms[0], nil
	}
}

// loadImage makes the image in tarPath available to Docker and returns the
// reference to run it by. An image already present (by config digest, else
// by repo tag) is reused without loading.
func (e *engine) loadImage(ctx context.Context, tarPath string) (string, error) {
	m, err := readManifest(tarPath)
	if err != nil {
		return "", err
	}
	id := "sha256:" + strings.TrimSuffix(path.Base(m.Config), ".json")
	candidates := append([]string{id}, m.RepoTags...)
	for _, ref := range candidates {
		if _, err := e.api.ImageInspect(ctx, ref); err == nil {
			return ref, nil
		}
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	resp, err := e.api.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
	if err != nil {
		return "", fmt.Errorf("load %s: %w", tarPath, err)
	}
	body, err := io.ReadAll(resp)
	resp.Close()
	if err != nil {
		return "", fmt.Errorf("load %s: %w", tarPath, err)
	}
	if msg := streamError(body); msg != "" {
		return "", fmt.Errorf("load %s: %s", tarPath, msg)
	}
	for _, ref := range candidates {
		if _, err := e.api.ImageInspect(ctx, ref); err == nil {
			return ref, nil
		}
	}
	return "", fmt.Errorf("load %s: image not found after loading", tarPath)
}

// streamError returns the first error of a Docker JSON message stream.
func streamError(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			return ""
		}
		if msg.Error != "" {
			return msg.Error
		}
	}
}

// containerState reports whether the machine's container exists and runs.
func (e *engine) containerState(ctx context.Context, name string) (exists, running bool, pid int, err error) {
	res, err := e.api.ContainerInspect(ctx, containerName(name), client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, false, 0, nil
	}
	if err != nil {
		return false, false, 0, err
	}
	st := res.Container.State
	if st == nil {
		return true, false, 0, nil
	}
	return true, st.Running, st.Pid, nil
}

func (e *engine) removeContainer(ctx context.Context, name string) error {
	_, err := e.api.ContainerRemove(ctx, containerName(name), client.ContainerRemoveOptions{Force: true})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// start runs the machine's container, creating it on first start. The
// container shares the host's network namespace so that the guest's
// 127.0.0.1 is the host's, as under smolvm's TSI networking.
func (e *engine) start(ctx context.Context, m *machine, stateDir string) error {
	exists, running, _, err := e.containerState(ctx, m.Name)
	if err != nil {
		return err
	}
	if running {
		return nil
	}
	if !exists {
		// The machine's own labels stay in its record and are not copied:
		// real smolvm runs no Docker container, so nothing that lists
		// containers by the machine's labels (bot-bottle's ls, stop, rm)
		// may find this one and act on it behind smolvm's back.
		labels := map[string]string{
			labelSim:     "1",
			labelState:   stateDir,
			labelMachine: m.Name,
		}
		// The machine's command replaces the image's entrypoint too, as
		// smolvm's "-- CMD" does.
		cfg := &container.Config{
			Image:  m.Image,
			Env:    m.Env,
			Labels: labels,
			User:   "0",
		}
		if len(m.Cmd) > 0 {
			cfg.Entrypoint, cfg.Cmd = m.Cmd[:1], m.Cmd[1:]
		}
		host := &container.HostConfig{NetworkMode: "host"}
		if m.MemMiB > 0 {
			host.Memory = int64(m.MemMiB) << 20
		}
		if m.CPUs > 0 {
			host.NanoCPUs = int64(m.CPUs) * 1e9
		}
		_, err := e.api.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       containerName(m.Name),
			Config:     cfg,
			HostConfig: host,
		})
		if err != nil {
			return err
		}
	}
	_, err = e.api.ContainerStart(ctx, containerName(m.Name), client.ContainerStartOptions{})
	return err
}

func (e *engine) stop(ctx context.Context, name string) error {
	// The workload is `sleep infinity`, which ignores SIGTERM as PID 1;
	// waiting out a grace period would only slow tests down.
	zero := 0
	_, err := e.api.ContainerStop(ctx, containerName(name), client.ContainerStopOptions{Timeout: &zero})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// execRequest is one exec into a machine's container.
type execRequest struct {
	Argv        []string
	Env         []string
	Workdir     string
	Interactive bool
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
}

// exec runs an argv as root in the container, streams its output and
// returns its exit code.
func (e *engine) exec(ctx context.Context, name string, req execRequest) (int, error) {
	created, err := e.api.ExecCreate(ctx, containerName(name), client.ExecCreateOptions{
		User:         "0",
		Env:          req.Env,
		WorkingDir:   req.Workdir,
		Cmd:          req.Argv,
		AttachStdin:  req.Interactive,
		AttachStdout: true,
		AttachStderr: true,
	})
	if err != nil {
		return 0, err
	}
	att, err := e.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, err
	}
	defer att.Close()
	if req.Interactive && req.Stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, req.Stdin)
			_ = att.CloseWrite()
		}()
	}
	// The attach stream ignores ctx; closing it is what interrupts a
	// copy that outlives --timeout or a signal.
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()
	if _, err := stdcopy.StdCopy(req.Stdout, req.Stderr, att.Reader); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, err
	}
	// The stream ends a moment before the daemon records the exit code;
	// poll briefly, bounded.
	for range 100 {
		insp, err := e.api.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, err
		}
		if !insp.Running {
			return insp.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, errors.New("exec did not report an exit code")
}

// copyIn writes one host file to an absolute container path, creating the
// parent directories, owned by root.
func (e *engine) copyIn(ctx context.Context, name, hostPath, guestPath string) error {
	parent := path.Dir(guestPath)
	var stderr bytes.Buffer
	code, err := e.exec(ctx, name, execRequest{
		Argv:   []string{"mkdir", "-p", "--", parent},
		Stdout: io.Discard,
		Stderr: &stderr,
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("create %s: %s", parent, strings.TrimSpace(stderr.String()))
	}
	f, err := os.Open(hostPath)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg,
			Name:     path.Base(guestPath),
			Mode:     int64(st.Mode().Perm()),
			Size:     st.Size(),
			ModTime:  st.ModTime(),
		})
		if err == nil {
			_, err = io.CopyN(tw, f, st.Size())
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err = e.api.CopyToContainer(ctx, containerName(name), client.CopyToContainerOptions{
		DestinationPath: parent,
		Content:         pr,
	})
	pr.CloseWithError(err)
	return err
}
