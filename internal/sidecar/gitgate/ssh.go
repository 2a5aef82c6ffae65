package gitgate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// SSHArgs is the ssh argv (without the program) that `bottle sidecar
// git-ssh` runs for git: the repo's identity only, never a prompt, the
// configured host key policy, then git's own arguments unchanged.
func SSHArgs(identity, knownHosts, strict string, gitArgs []string) []string {
	if strict == "" {
		strict = StrictYes
	}
	args := []string{"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=" + strict, "-o", "ConnectTimeout=30"}
	if identity != "" {
		args = append(args, "-i", identity)
	}
	if knownHosts != "" {
		args = append(args, "-o", "UserKnownHostsFile="+knownHosts)
	}
	return append(args, gitArgs...)
}

// RunSSH replaces the process with ssh, configured from the environment
// the gate set for git. It returns only on error.
func RunSSH(gitArgs []string) error {
	bin := os.Getenv(EnvSSH)
	if bin == "" {
		bin = "ssh"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("git-ssh: %w", err)
	}
	if len(gitArgs) == 0 {
		return errors.New("git-ssh: no arguments from git")
	}
	argv := append([]string{path}, SSHArgs(os.Getenv(EnvIdentity), os.Getenv(EnvSSHKnownHosts), os.Getenv(EnvSSHStrict), gitArgs)...)
	return syscall.Exec(path, argv, os.Environ())
}
