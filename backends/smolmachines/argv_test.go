package smolmachines

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/bot-bottle/bot-bottle/backends"
)

func TestCreateArgs(t *testing.T) {
	cases := []struct {
		name string
		spec MachineSpec
		want []string
	}{
		{
			name: "minimal",
			spec: MachineSpec{Name: "bot-bottle-demo-abc12", ImageTar: "/c/agent.tar"},
			want: []string{"machine", "create", "--name", "bot-bottle-demo-abc12", "--image", "/c/agent.tar",
				"--net", "--", "sleep", "infinity"},
		},
		{
			name: "everything, labels sorted",
			spec: MachineSpec{
				Name: "bot-bottle-demo-abc12", ImageTar: "/c/agent.tar", CPUs: 2, MemMiB: 2048,
				Env: []string{"B=2", "A=1=x"},
				Labels: backends.Labels{
					backends.LabelSlug:    "demo-abc12",
					backends.LabelAgent:   "demo",
					backends.LabelRole:    "machine",
					backends.LabelVersion: "v1",
					backends.LabelBackend: "smolmachines",
				},
			},
			want: []string{"machine", "create", "--name", "bot-bottle-demo-abc12", "--image", "/c/agent.tar",
				"--cpus", "2", "--mem", "2048", "-e", "B=2", "-e", "A=1=x",
				"--label", "bot-bottle.agent=demo", "--label", "bot-bottle.backend=smolmachines",
				"--label", "bot-bottle.role=machine", "--label", "bot-bottle.slug=demo-abc12",
				"--label", "bot-bottle.version=v1",
				"--net", "--", "sleep", "infinity"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, createArgs(tc.spec))
		})
	}
}

func TestExecArgs(t *testing.T) {
	cases := []struct {
		name string
		spec execSpec
		argv []string
		want []string
	}{
		{
			name: "bare",
			argv: []string{"true"},
			want: []string{"machine", "exec", "--name", "m", "--", "true"},
		},
		{
			name: "env workdir stdin, guest argv that looks like flags",
			spec: execSpec{Env: []string{"HOME=/home/node", "USER=node"}, Workdir: "/home/node/workspace", Interactive: true},
			argv: []string{"runuser", "-u", "node", "--", "git", "config", "--global", "user.name", "A B"},
			want: []string{"machine", "exec", "--name", "m", "-e", "HOME=/home/node", "-e", "USER=node",
				"-w", "/home/node/workspace", "-i", "--",
				"runuser", "-u", "node", "--", "git", "config", "--global", "user.name", "A B"},
		},
		{
			name: "interactive terminal session",
			spec: execSpec{Env: []string{"TERM=xterm"}, Interactive: true, TTY: true, Stream: true},
			argv: []string{"claude"},
			want: []string{"machine", "exec", "--name", "m", "-e", "TERM=xterm", "-i", "-t", "--stream", "--", "claude"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, execArgs("m", tc.spec, tc.argv))
		})
	}
}

func TestSimpleArgs(t *testing.T) {
	assert.Equal(t, []string{"machine", "start", "--name", "m"}, startArgs("m"))
	assert.Equal(t, []string{"machine", "stop", "--name", "m"}, stopArgs("m"))
	assert.Equal(t, []string{"machine", "delete", "--name", "m", "-f"}, deleteArgs("m"))
	assert.Equal(t, []string{"machine", "ls", "--json"}, listArgs())
	assert.Equal(t, []string{"machine", "status", "--name", "m", "--json"}, statusArgs("m"))
	assert.Equal(t, []string{"machine", "cp", "/host/a b", "m:/guest/x:y"}, cpArgs("/host/a b", "m", "/guest/x:y"))
}

func TestMachineOfAndSubcommand(t *testing.T) {
	cases := []struct {
		args         []string
		sub, machine string
	}{
		{createArgs(MachineSpec{Name: "m1", ImageTar: "/t"}), "create", "m1"},
		{execArgs("m2", execSpec{}, []string{"echo", "--name", "x"}), "exec", "m2"},
		{cpArgs("/h", "m3", "/g:x"), "cp", "m3"},
		{listArgs(), "ls", ""},
		{deleteArgs("m4"), "delete", "m4"},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.sub, subcommand(tc.args), tc.args)
		assert.Equal(t, tc.machine, machineOf(tc.args), tc.args)
	}
}
