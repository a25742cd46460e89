#!/usr/bin/env bash
# The main job on the shipped examples: install what is missing, build rolld,
# validate and plan the example services, then run the agent on them: the
# v1 services come up behind HAProxy, v2 is saved over them and rolld rolls
# every change out (canary, in place, create, delete) while you watch.
#   bash examples/demo.sh          run the demo, stop everything at the end
#   bash examples/demo.sh --keep   leave the agent and the services running
#   bash examples/demo.sh --stop   stop what a --keep run left running
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
work=$top/build/demo
state=$work/state

stop_demo() {
    [ -f "$work/agent.pid" ] && kill "$(cat "$work/agent.pid")" 2>/dev/null || true
    rm -f "$work/agent.pid"
    # replicas and HAProxy outlive the agent by design; the demo stops them
    [ -f "$state/haproxy/haproxy.pid" ] && kill "$(cat "$state/haproxy/haproxy.pid")" 2>/dev/null || true
    for env in /proc/[0-9]*/environ; do
        if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qx "ROLLD_STATE_DIR=$state"; then
            pid=${env#/proc/}; kill "${pid%/environ}" 2>/dev/null || true
        fi
    done
}

if [ "${1:-}" = --stop ]; then
    stop_demo
    echo "demo stopped"
    exit 0
fi

tests/install-deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
rolld=$top/build/rolld

echo "== rolld validate examples/services/v1 examples/services/v2"
"$rolld" validate examples/services/v1 examples/services/v2
echo
echo "== rolld validate examples/services/invalid   (a spec with deliberate mistakes)"
"$rolld" validate examples/services/invalid || true
echo
echo "== rolld plan examples/services/v2 --against examples/services/v1"
"$rolld" plan examples/services/v2 --against examples/services/v1
echo

stop_demo
rm -rf "$work"
mkdir -p "$work/services"
cp examples/services/v1/*.yaml "$work/services/"
export PATH="$top/build/examples/model-server:$PATH"
"$rolld" run --source "$work/services" --state-dir "$state" --policies examples/demo-policies \
    >"$work/agent.log" 2>&1 &
echo $! >"$work/agent.pid"
[ "${1:-}" = --keep ] || trap stop_demo EXIT

settled() {
    local out
    out=$("$rolld" status --state-dir "$state" 2>/dev/null) || return 1
    [ -n "$out" ] && ! grep -Eq ' (creating|canary_starting|canary_progressing|promoting|rolling_back|deleting) ' <<<"$out"
}
wait_settled() {
    local deadline=$((SECONDS + $1))
    while ! settled; do
        if [ $SECONDS -ge $deadline ]; then
            echo "not settled after $1 s; the agent log is $work/agent.log"
            return 1
        fi
        "$rolld" status --state-dir "$state" 2>/dev/null | sed 's/^/  /'
        echo
        sleep 2
    done
}

echo "== rolld run: bringing up v1 (agent log: $work/agent.log)"
wait_settled 60
"$rolld" status --state-dir "$state"
echo
echo "== curl 127.0.0.1:18080/generate"
curl -s 127.0.0.1:18080/generate; echo
echo
echo "== saving v2 over v1: rolld plans and rolls out each change"
rm -f "$work/services/search.yaml"
cp examples/services/v2/*.yaml "$work/services/"
sleep 1
wait_settled 300
echo
"$rolld" status --state-dir "$state"
echo
echo "chat is paused at its canary_percent (30%); a request can pin a version:"
echo "== curl -H 'X-Rolld-Version: canary' 127.0.0.1:18080/generate"
curl -s -H 'X-Rolld-Version: canary' 127.0.0.1:18080/generate; echo
echo "== curl -H 'X-Rolld-Version: primary' 127.0.0.1:18080/generate"
curl -s -H 'X-Rolld-Version: primary' 127.0.0.1:18080/generate; echo
echo
if [ "${1:-}" = --keep ]; then
    echo "left running: '$rolld status --state-dir $state', and 'bash examples/demo.sh --stop' to stop"
fi
