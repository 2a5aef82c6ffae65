package images_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/bot-bottle/bot-bottle/backends"
	"github.com/bot-bottle/bot-bottle/internal/ca"
	"github.com/bot-bottle/bot-bottle/internal/testenv"
)

// The agent image keeps the distribution's anchors in one combined file, so
// that a launch adds the bottle CA with update-ca-certificates touching two
// certificates: the system anchors stay trusted through the bundle, the
// bottle CA joins them, and the output still says "1 added".
func TestAgentTrustStoreAddsTheBottleCA(t *testing.T) {
	eng := testenv.RequireDocker(t)
	agentRef, _ := testenv.Images(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	labels := testenv.Labels(t)
	testenv.Cleanup(t, eng, labels)
	name := testenv.Name("bbt-trust")
	_, err := eng.CreateContainer(ctx, backends.ContainerSpec{Name: name, Image: agentRef, Entrypoint: []string{"sleep", "infinity"}, Labels: labels, Init: true})
	require.NoError(t, err)
	require.NoError(t, eng.StartContainer(ctx, name))
	g := eng.Guest(name)
	run := func(argv ...string) string {
		t.Helper()
		res, err := g.Exec(ctx, backends.ExecRequest{Argv: argv})
		require.NoError(t, err, "%v: %s %s", argv, res.Stdout, res.Stderr)
		return strings.TrimSpace(res.Stdout)
	}
	count := func() int {
		t.Helper()
		n, err := strconv.Atoi(run("grep", "-c", "BEGIN CERTIFICATE", "/etc/ssl/certs/ca-certificates.crt"))
		require.NoError(t, err)
		return n
	}

	assert.Equal(t, "bot-bottle/system.crt", run("cat", "/etc/ca-certificates.conf"))
	system := count()
	assert.Greater(t, system, 100, "the distribution's anchors are in the bundle")
	// OpenSSL's default store still trusts a system root without the
	// per-anchor hash links.
	assert.Contains(t, run("openssl", "verify", "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt"), ": OK")

	// What the ca step does, with a CA made like the egress sidecar's.
	certPath, _, err := ca.Generate(t.TempDir(), "bot-bottle trust test")
	require.NoError(t, err)
	const guestCA = "/usr/local/share/ca-certificates/bot-bottle-ca.crt"
	require.NoError(t, g.CopyFile(ctx, certPath, guestCA))
	start := time.Now()
	out := run("update-ca-certificates")
	took := time.Since(start)
	assert.Contains(t, out, "1 added")
	assert.Equal(t, system+1, count(), "the bottle CA joins the anchors")
	assert.Contains(t, run("openssl", "verify", guestCA), ": OK")
	assert.Equal(t, guestCA, run("readlink", "/etc/ssl/certs/bot-bottle-ca.pem"))
	assert.Contains(t, run("openssl", "verify", "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt"), ": OK")
	t.Logf("update-ca-certificates took %s", took.Round(time.Millisecond))
}
