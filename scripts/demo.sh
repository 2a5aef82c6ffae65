#!/usr/bin/env bash
# The demo: build what is missing, launch examples/demo.yaml detached, run
# a command in the agent, print the step timeline, remove the bottle.
set -euo pipefail
cd "$(dirname "$0")/.."
bottle=bin/bottle
manifest=examples/demo.yaml
out=$(mktemp -d)
slug=""
cleanup() {
	if [ -n "$slug" ]; then "$bottle" rm "$slug" >/dev/null 2>&1 || true; fi
	rm -rf "$out"
}
trap cleanup EXIT

# The demo route injects $ANTHROPIC_API_KEY; a placeholder keeps the demo
# self-contained when none is set (nothing is sent anywhere).
export ANTHROPIC_API_KEY="${ANTHROPIC_API_KEY:-demo-placeholder-token}"

echo "== images"
"$bottle" images build

echo "== manifest"
"$bottle" manifest check -f "$manifest"

echo "== plan"
"$bottle" plan demo -f "$manifest"

echo "== launch"
slug=$("$bottle" launch demo -f "$manifest" --detach --progress plain \
	--timings "$out/timings.json" --gantt "$out/launch.svg" --metrics-file "$out/launch.prom")
echo "launched $slug"

echo "== ls"
"$bottle" ls

echo "== exec: whoami, git identity, trust store, proxy"
"$bottle" exec "$slug" -- sh -c 'whoami; git config --global user.name; ls /usr/local/share/ca-certificates; echo "HTTPS_PROXY=$HTTPS_PROXY"'

echo "== step timeline"
go run ./scripts/timeline "$out/timings.json"

echo "== rm"
"$bottle" rm "$slug"
slug=""
echo "gantt chart and metrics were in $out (removed); pass --gantt/--timings to keep them"
