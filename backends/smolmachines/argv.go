package smolmachines

import (
	"maps"
	"slices"
	"strconv"
)

// This file is the only place that knows smolvm's command-line syntax.
// smolvm's flags have changed between releases; when they change again, the
// builders below and their exact-argv tests are all that needs editing.
// Every builder returns the arguments after the program name.

// idleCmd is the workload every machine runs. Without a long-running
// command the image's own CMD becomes the workload, and an exec that joins a
// workload that is exiting is SIGKILLed; provisioning and the agent all run
// through exec, so the workload only has to stay alive.
var idleCmd = []string{"sleep", "infinity"}

func createArgs(spec MachineSpec) []string {
	args := []string{"machine", "create", "--name", spec.Name, "--image", spec.ImageTar}
	if spec.CPUs > 0 {
		args = append(args, "--cpus", strconv.Itoa(spec.CPUs))
	}
	if spec.MemMiB > 0 {
		args = append(args, "--mem", strconv.Itoa(spec.MemMiB))
	}
	for _, kv := range spec.Env {
		args = append(args, "-e", kv)
	}
	// Sorted so the same spec always yields the same argv (plans and tests
	// compare it as text).
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		args = append(args, "--label", k+"="+spec.Labels[k])
	}
	// --net alone selects TSI: guest 127.0.0.1:P is host loopback port P,
	// which is how the guest reaches the sidecars published on loopback.
	// Adding -p or --allow-host would switch to the virtio-net gateway and
	// break those addresses.
	args = append(args, "--net", "--")
	return append(args, idleCmd...)
}

func startArgs(name string) []string {
	return []string{"machine", "start", "--name", name}
}

// execSpec is what an exec invocation carries besides the guest argv.
type execSpec struct {
	Env     []string
	Workdir string
	// Interactive forwards the caller's stdin to the guest process; smolvm
	// does not read stdin for an exec without -i.
	Interactive bool
	// TTY allocates a terminal in the guest.
	TTY bool
	// Stream passes output through as it comes; without it smolvm
	// buffers each stream until the process exits.
	Stream bool
}

func execArgs(name string, spec execSpec, argv []string) []string {
	args := []string{"machine", "exec", "--name", name}
	for _, kv := range spec.Env {
		args = append(args, "-e", kv)
	}
	if spec.Workdir != "" {
		args = append(args, "-w", spec.Workdir)
	}
	if spec.Interactive {
		args = append(args, "-i")
	}
	if spec.TTY {
		args = append(args, "-t")
	}
	if spec.Stream {
		args = append(args, "--stream")
	}
	// "--" ends smolvm's own flags, so a guest argv starting with "-" is
	// never read as one.
	args = append(args, "--")
	return append(args, argv...)
}

// cpArgs copies a host file into the guest. smolvm splits a "NAME:PATH"
// operand on its first colon, so the machine name must not contain one
// (machine names never do) while the guest path may.
func cpArgs(hostPath, name, guestPath string) []string {
	return []string{"machine", "cp", hostPath, name + ":" + guestPath}
}

func stopArgs(name string) []string {
	return []string{"machine", "stop", "--name", name}
}

// deleteArgs always passes -f: without it smolvm prompts, and with no
// terminal it prints "Cancelled" and exits 0 having deleted nothing.
func deleteArgs(name string) []string {
	return []string{"machine", "delete", "--name", name, "-f"}
}

func listArgs() []string {
	return []string{"machine", "ls", "--json"}
}

func statusArgs(name string) []string {
	return []string{"machine", "status", "--name", name, "--json"}
}
