package images

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const deb822Sample = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`

func TestParseDeb822(t *testing.T) {
	got := parseDeb822(deb822Sample)
	assert.Equal(t, []sourceEntry{
		{"http://mirror.example/debian", "bookworm"},
		{"http://mirror.example/debian", "bookworm-updates"},
		{"http://mirror.example/debian-security", "bookworm-security"},
	}, got)

	disabled := "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\nEnabled: no\n"
	assert.Empty(t, parseDeb822(disabled))
	srcOnly := "Types: deb-src\nURIs: http://a.example/debian\nSuites: bookworm\n"
	assert.Empty(t, parseDeb822(srcOnly))
	folded := "Types: deb\nURIs:\n http://a.example/debian\n http://b.example/debian\nSuites: trixie\n"
	assert.Equal(t, []sourceEntry{{"http://a.example/debian", "trixie"}, {"http://b.example/debian", "trixie"}}, parseDeb822(folded))
}

func TestParseOneLine(t *testing.T) {
	data := `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://third.example/apt cloud-sdk main
deb [ arch=amd64 ] http://spaced.example/debian bookworm-backports main
deb http://main.example/debian bookworm main contrib # trailing
deb http://short.example
`
	assert.Equal(t, []sourceEntry{
		{"https://third.example/apt", "cloud-sdk"},
		{"http://spaced.example/debian", "bookworm-backports"},
		{"http://main.example/debian", "bookworm"},
	}, parseOneLine(data))
}

func TestPickMirror(t *testing.T) {
	cases := []struct {
		name    string
		entries []sourceEntry
		want    string
	}{
		{"main archive, not security", []sourceEntry{
			{"http://sec.example/debian-security", "bookworm-security"},
			{"http://main.example/debian", "bookworm"},
		}, "http://main.example/debian"},
		{"third-party suites are ignored", []sourceEntry{
			{"https://deb.thirdparty.example/node", "nodistro"},
			{"https://pkgs.thirdparty.example/apt", "cloud-sdk-bookworm"},
		}, ""},
		{"build suite wins over another Debian suite", []sourceEntry{
			{"http://trixie.example/debian", "trixie"},
			{"http://bookworm.example/debian", "bookworm"},
		}, "http://bookworm.example/debian"},
		{"another Debian suite's archive serves bookworm too", []sourceEntry{
			{"http://trixie.example/debian", "trixie"},
		}, "http://trixie.example/debian"},
		{"cdrom and odd schemes are skipped", []sourceEntry{
			{"cdrom:[Debian]/", "bookworm"},
			{"file:/srv/mirror", "bookworm"},
		}, "file:/srv/mirror"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, pickMirror(c.entries))
		})
	}
}

func TestDebianMirrorFromFilesAndEnv(t *testing.T) {
	dir := t.TempDir()
	saved := aptSources
	t.Cleanup(func() { aptSources = saved })
	aptSources.list = filepath.Join(dir, "sources.list")
	aptSources.listDir = filepath.Join(dir, "sources.list.d")
	require.NoError(t, os.Mkdir(aptSources.listDir, 0o755))

	t.Setenv(EnvDebianMirror, "")
	_, err := DebianMirror()
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvDebianMirror)

	require.NoError(t, os.WriteFile(filepath.Join(aptSources.listDir, "x.sources.disabled"), []byte(deb822Sample), 0o644))
	_, err = DebianMirror()
	require.Error(t, err, "only *.sources and *.list files count")

	require.NoError(t, os.WriteFile(aptSources.list, []byte("deb http://list.example/debian bookworm main\n"), 0o644))
	m, err := DebianMirror()
	require.NoError(t, err)
	assert.Equal(t, "http://list.example/debian", m)

	require.NoError(t, os.WriteFile(filepath.Join(aptSources.listDir, "debian.sources"), []byte(deb822Sample), 0o644))
	m, err = DebianMirror()
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example/debian", m, "deb822 sources come first")

	t.Setenv(EnvDebianMirror, "http://override.example/debian")
	m, err = DebianMirror()
	require.NoError(t, err)
	assert.Equal(t, "http://override.example/debian", m)

	t.Setenv(EnvDebianMirror, "ftp://nope.example/debian")
	_, err = DebianMirror()
	assert.Error(t, err)
}
