package steps

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/bot-bottle/bot-bottle/internal/plan"
)

// caInstallScript is constant: the certificate path travels as $1, never
// inside the script. chmod, chown and update-ca-certificates are folded
// into one exec because each exec right after a microVM boots is exposed
// to the warm-up race.
//
// The certificate's link in /etc/ssl/certs is removed first so that a
// rerun reports "1 added" again: the warm-up race can kill an attempt
// after update-ca-certificates linked the certificate, and the retry would
// otherwise see "0 added" and fail. update-ca-certificates rebuilds the
// bundle from scratch, so a rerun never lists the certificate twice.
const caInstallScript = `chmod 644 "$1" && chown root:root "$1" && rm -f "/etc/ssl/certs/$(basename "$1" .crt).pem" && update-ca-certificates`

// CA installs the bottle's CA certificate in the guest's trust store: the
// egress CA when egress is the agent's first hop, otherwise the firewall's.
type CA struct {
	guestStep
	role string
}

// NewCA needs the booted guest and the sidecar whose CA it installs.
func NewCA(l *Launch) *CA {
	role := l.Plan.CASidecar()
	dep := IDSidecarEgress
	if role == plan.RolePipelock {
		dep = IDSidecarPipelock
	}
	return &CA{guestStep: guestStep{base{L: l, id: IDCA, deps: []string{IDBoot, dep}}}, role: role}
}

func (s *CA) Run(ctx context.Context) error {
	cert, ok := s.L.CACert(s.role)
	if !ok {
		return fmt.Errorf("no %s CA certificate was produced", s.role)
	}
	if _, err := os.Stat(cert); err != nil {
		return fmt.Errorf("the %s CA certificate is missing: %w", s.role, err)
	}
	if err := s.copyFile(ctx, cert, plan.GuestCAPath); err != nil {
		return fmt.Errorf("copying the CA certificate: %w", err)
	}
	res, err := s.exec(ctx, "sh", "-c", caInstallScript, "sh", plan.GuestCAPath)
	if err != nil {
		return fmt.Errorf("installing the CA certificate: %w", err)
	}
	if !strings.Contains(res.Stdout, "1 added") {
		return &CAInstallError{Stdout: res.Stdout, Stderr: res.Stderr}
	}
	return nil
}

// CAInstallError reports that update-ca-certificates ran but did not add
// the certificate.
type CAInstallError struct{ Stdout, Stderr string }

func (e *CAInstallError) Error() string {
	return fmt.Sprintf("update-ca-certificates did not report \"1 added\": %s", strings.TrimSpace(e.Stdout+" "+e.Stderr))
}
