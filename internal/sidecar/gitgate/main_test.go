package gitgate

import (
	"fmt"
	"os"
	"testing"
)

const helperEnv = "BOT_BOTTLE_GITGATE_TESTHELPER"

// TestMain lets the test binary stand in for the bottle binary: git
// daemon and receive-pack run the hook wrappers, which exec
// "$BOT_BOTTLE_SELF sidecar git-gate-hook ..." — here, this binary.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" && len(os.Args) > 2 && os.Args[1] == "sidecar" {
		switch os.Args[2] {
		case "git-gate-hook":
			os.Exit(RunHook(os.Args[3:], os.Stdin, os.Stdout, os.Stderr))
		case "git-ssh":
			err := RunSSH(os.Args[3:])
			fmt.Fprintln(os.Stderr, err)
			os.Exit(255)
		}
		fmt.Fprintln(os.Stderr, "unknown helper command", os.Args[2])
		os.Exit(2)
	}
	os.Setenv(helperEnv, "1")
	os.Exit(m.Run())
}
