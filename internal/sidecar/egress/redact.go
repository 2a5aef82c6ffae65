package egress

import (
	"bytes"
	"io"
	"strings"
)

// redactChunk is how much of an upstream body the redactor reads at once.
const redactChunk = 32 << 10

// redactingBody masks, as the body streams, every occurrence of a needle
// (an injected token in any of the forms the scanner knows) with asterisks
// of the same length. The length is kept so a Content-Length stays true.
//
// An upstream of a token route sees the token; one that echoes it back
// (an echo endpoint, an error page quoting the request) would otherwise
// hand the agent the very secret the route keeps from it.
type redactingBody struct {
	rc      io.ReadCloser
	needles [][]byte
	// keep is how many trailing bytes are held back after each read: a
	// needle can straddle two reads, and keep (the longest needle minus
	// one) bytes are enough to see it whole on the next.
	keep int
	raw  []byte // read, not yet released, as the upstream sent it
	hide []bool // per byte of raw: inside an occurrence of a needle
	out  []byte // released and masked, not yet returned
	err  error  // the upstream body's terminal error
}

// newRedactingBody wraps rc; with no needles it returns rc itself.
func newRedactingBody(rc io.ReadCloser, needles [][]byte) io.ReadCloser {
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	if longest == 0 {
		return rc
	}
	return &redactingBody{rc: rc, needles: needles, keep: longest - 1}
}

func (b *redactingBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		buf := make([]byte, redactChunk)
		n, err := b.rc.Read(buf)
		b.raw = append(b.raw, buf[:n]...)
		b.hide = append(b.hide, make([]bool, n)...)
		// Occurrences are found in the bytes as sent, for every needle,
		// before any is masked: masking one first could break up an
		// overlapping occurrence of another and leave part of it visible.
		markNeedles(b.raw, b.hide, b.needles)
		cut := len(b.raw) - b.keep
		if err != nil {
			b.err = err
			cut = len(b.raw)
		}
		if cut <= 0 {
			continue
		}
		b.out = masked(b.raw[:cut], b.hide[:cut])
		b.raw = append([]byte(nil), b.raw[cut:]...)
		b.hide = append([]bool(nil), b.hide[cut:]...)
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

func (b *redactingBody) Close() error { return b.rc.Close() }

// markNeedles sets hide for every byte of data inside an occurrence of a
// needle (occurrences may overlap).
func markNeedles(data []byte, hide []bool, needles [][]byte) {
	for _, n := range needles {
		if len(n) == 0 {
			continue
		}
		for i := 0; i <= len(data)-len(n); {
			j := bytes.Index(data[i:], n)
			if j < 0 {
				break
			}
			for k := i + j; k < i+j+len(n); k++ {
				hide[k] = true
			}
			i += j + 1
		}
	}
}

// masked returns a copy of data with the hidden bytes replaced by '*'.
func masked(data []byte, hide []bool) []byte {
	out := make([]byte, len(data))
	for i, c := range data {
		if hide[i] {
			c = '*'
		}
		out[i] = c
	}
	return out
}

// identityEncoded reports whether a Content-Encoding leaves the body as
// sent, so the redactor can see the token in it.
func identityEncoded(contentEncoding string) bool {
	ce := strings.TrimSpace(strings.ToLower(contentEncoding))
	return ce == "" || ce == "identity"
}
