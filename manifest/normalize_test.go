package manifest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeDefaults(t *testing.T) {
	m := &Manifest{Bottles: map[string]*Bottle{
		"dev": {
			Egress: &Egress{Routes: []Route{
				{Host: "API.Example.com", TokenEnv: "T"},
				{Host: "b.example.com", Header: "x-api-key", Format: "{token}"},
			}},
			Allow: []string{"*.Example.ORG"},
		},
		"nil": nil,
	}}
	m.Normalize()

	dev := m.Bottles["dev"]
	assert.Equal(t, Route{Host: "api.example.com", TokenEnv: "T", Header: "Authorization", Format: "Bearer {token}"}, dev.Routes()[0])
	assert.Equal(t, Route{Host: "b.example.com", Header: "x-api-key", Format: "{token}"}, dev.Routes()[1])
	assert.Equal(t, []string{"*.example.org"}, dev.Allow)
	assert.Equal(t, FirewallBuiltin, dev.Firewall)
	assert.NotNil(t, dev.Env)
	assert.Empty(t, dev.Env)
	assert.NotNil(t, m.Agents)
	assert.Nil(t, m.Bottles["nil"])
}

func TestNormalizeKeepsExplicitValuesAndIsIdempotent(t *testing.T) {
	m, err := Parse(readTestdata(t, "good-full.yaml"), "good-full.yaml")
	require.NoError(t, err)
	m.Normalize()
	assert.Equal(t, FirewallPipelock, m.Bottles["dev"].Firewall)
	once := mustJSON(t, m)
	m.Normalize()
	assert.Equal(t, string(once), string(mustJSON(t, m)))
}

func TestRoutesNilSafe(t *testing.T) {
	var b *Bottle
	assert.Nil(t, b.Routes())
	assert.Nil(t, (&Bottle{}).Routes())
}

func TestResolve(t *testing.T) {
	m := baseManifest()
	a, b, err := m.Resolve("demo")
	require.NoError(t, err)
	assert.Same(t, m.Agents["demo"], a)
	assert.Same(t, m.Bottles["dev"], b)

	_, _, err = m.Resolve("dmeo")
	assert.EqualError(t, err, `agent "dmeo" is not defined (did you mean "demo"?)`)
	_, _, err = m.Resolve("zzzzzzzz")
	assert.EqualError(t, err, `agent "zzzzzzzz" is not defined (defined agents: demo)`)

	m.Agents["demo"].Bottle = "gone"
	_, _, err = m.Resolve("demo")
	assert.EqualError(t, err, `agent "demo" names bottle "gone", which is not defined`)
}
