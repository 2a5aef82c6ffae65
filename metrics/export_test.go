package metrics

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var allFamilies = map[string]dto.MetricType{
	StepDurationName:       dto.MetricType_HISTOGRAM,
	StepAttemptsName:       dto.MetricType_COUNTER,
	StepRetriesName:        dto.MetricType_COUNTER,
	LaunchDurationName:     dto.MetricType_HISTOGRAM,
	LaunchCriticalPathName: dto.MetricType_HISTOGRAM,
	LaunchesName:           dto.MetricType_COUNTER,
}

// recordedLaunch is a Recorder that has seen a whole launch, so every
// family has at least one series.
func recordedLaunch(backend string) *Recorder {
	r := New(backend)
	for _, e := range scriptedEvents() {
		r.OnEvent(e)
	}
	r.ObserveLaunch(launchOK(), LaunchOK)
	return r
}

func parseText(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	require.NoError(t, err)
	return mfs
}

func TestWriteTextfileIsParseableAndComplete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bot_bottle.prom")
	require.NoError(t, WriteTextfile(path, recordedLaunch("docker").Gatherer()))

	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	mfs := parseText(t, f)
	for name, typ := range allFamilies {
		mf, ok := mfs[name]
		if assert.True(t, ok, "family %s missing", name) {
			assert.Equal(t, typ, mf.GetType(), name)
		}
	}
	attempts := mfs[StepAttemptsName]
	var gate float64
	for _, m := range attempts.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "step" && lp.GetValue() == "sidecar:git-gate" {
				gate = m.GetCounter().GetValue()
			}
		}
	}
	assert.Equal(t, 2.0, gate)

	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm(), "the exporter may run as another user")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left behind")
}

type failingGatherer struct{}

func (failingGatherer) Gather() ([]*dto.MetricFamily, error) {
	return nil, errors.New("collector exploded")
}

func TestWriteTextfileReplacesOnlyOnSuccess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bot_bottle.prom")
	require.NoError(t, os.WriteFile(path, []byte("# old\n"), 0o644))

	err := WriteTextfile(path, failingGatherer{})
	require.ErrorContains(t, err, "collector exploded")
	old, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "# old\n", string(old), "a failed write keeps the previous file")

	require.NoError(t, WriteTextfile(path, recordedLaunch("docker").Gatherer()))
	fresh, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(fresh), LaunchesName)
	assert.NotContains(t, string(fresh), "# old")

	err = WriteTextfile(filepath.Join(dir, "missing", "x.prom"), recordedLaunch("docker").Gatherer())
	assert.Error(t, err)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

// pushgateway records what a Pushgateway would receive.
type pushgateway struct {
	mu       sync.Mutex
	requests int
	method   string
	path     string
	ctype    string
	body     []byte
	status   int
}

func (p *pushgateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.method, p.path, p.ctype, p.body = r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), body
	if p.status != 0 {
		w.WriteHeader(p.status)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// groupingOf decodes a Pushgateway push path the way the gateway does:
// /metrics/job/<job>{/<label>/<value>}, where a label suffixed @base64
// carries a base64url value (used for values containing '/').
func groupingOf(t *testing.T, path string) map[string]string {
	t.Helper()
	rest, ok := strings.CutPrefix(path, "/metrics/")
	require.True(t, ok, path)
	parts := strings.Split(rest, "/")
	require.Zero(t, len(parts)%2, path)
	out := map[string]string{}
	for i := 0; i < len(parts); i += 2 {
		name, value := parts[i], parts[i+1]
		if n, b64 := strings.CutSuffix(name, "@base64"); b64 {
			raw, err := base64.RawURLEncoding.DecodeString(value)
			require.NoError(t, err)
			name, value = n, string(raw)
		} else {
			v, err := url.PathUnescape(value)
			require.NoError(t, err)
			value = v
		}
		out[name] = value
	}
	return out
}

func TestPushSendsTheGroupToThePushgateway(t *testing.T) {
	gw := &pushgateway{}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	r := recordedLaunch("docker")
	require.NoError(t, Push(context.Background(), srv.URL, r.Gatherer(), "claude", "docker"))

	gw.mu.Lock()
	defer gw.mu.Unlock()
	assert.Equal(t, 1, gw.requests)
	assert.Equal(t, http.MethodPut, gw.method, "a launch replaces its group")
	// The client library orders the grouping pairs as it likes; the
	// gateway reads them as a set.
	assert.Equal(t, map[string]string{"job": "bot_bottle", "agent": "claude", "backend": "docker"}, groupingOf(t, gw.path))
	assert.Contains(t, []string{
		"/metrics/job/bot_bottle/agent/claude/backend/docker",
		"/metrics/job/bot_bottle/backend/docker/agent/claude",
	}, gw.path)
	assert.Contains(t, gw.ctype, "text/plain")

	mfs := parseText(t, bytes.NewReader(gw.body))
	for name := range allFamilies {
		require.Contains(t, mfs, name)
		for _, m := range mfs[name].GetMetric() {
			for _, lp := range m.GetLabel() {
				assert.NotContains(t, []string{"agent", "backend", "job"}, lp.GetName(),
					"%s: grouping labels are added by the gateway", name)
			}
		}
	}
	// Other labels survive the stripping.
	var steps []string
	for _, m := range mfs[StepAttemptsName].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "step" {
				steps = append(steps, lp.GetValue())
			}
		}
	}
	assert.ElementsMatch(t, []string{"image", "sidecar:git-gate", "sidecar:egress", "ca"}, steps)

	// Pushing must not have altered what the Recorder itself gathers.
	mine, err := r.Gatherer().Gather()
	require.NoError(t, err)
	for _, mf := range mine {
		for _, m := range mf.GetMetric() {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == "backend"
			}
			assert.True(t, found, "%s lost its backend label", mf.GetName())
		}
	}
}

func TestPushEncodesAwkwardGroupingValues(t *testing.T) {
	gw := &pushgateway{}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	require.NoError(t, Push(context.Background(), srv.URL+"/", recordedLaunch("docker").Gatherer(), "team/claude", "docker"))
	gw.mu.Lock()
	defer gw.mu.Unlock()
	assert.Equal(t, map[string]string{"job": "bot_bottle", "agent": "team/claude", "backend": "docker"}, groupingOf(t, gw.path))
}

func TestPushRefusesMismatchedGrouping(t *testing.T) {
	gw := &pushgateway{}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	err := Push(context.Background(), srv.URL, recordedLaunch("smolvm").Gatherer(), "claude", "docker")
	require.ErrorContains(t, err, `backend="smolvm"`)
	gw.mu.Lock()
	defer gw.mu.Unlock()
	assert.Zero(t, gw.requests, "nothing half-right is sent")
}

func TestPushReportsGatewayErrors(t *testing.T) {
	gw := &pushgateway{status: http.StatusBadRequest}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	err := Push(context.Background(), srv.URL, recordedLaunch("docker").Gatherer(), "claude", "docker")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Push(ctx, srv.URL, recordedLaunch("docker").Gatherer(), "claude", "docker")
	assert.ErrorIs(t, err, context.Canceled)
}

func TestPushWithExtraCollectorsInTheRegistry(t *testing.T) {
	gw := &pushgateway{}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	r := recordedLaunch("docker")
	extra := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bot_bottle_test_extra", Help: "extra"})
	extra.Set(3)
	r.Registry().MustRegister(extra)
	require.NoError(t, Push(context.Background(), srv.URL, r.Gatherer(), "claude", "docker"))
	gw.mu.Lock()
	defer gw.mu.Unlock()
	assert.Contains(t, parseText(t, bytes.NewReader(gw.body)), "bot_bottle_test_extra")
}
