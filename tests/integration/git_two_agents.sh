#!/usr/bin/env bash
# git_two_agents: two agents (host a and host b) take their specs from two
# directories of one repository and write one status branch. While both
# roll out changes at the same time, each commits its own services' status
# files; rejected pushes are redone on top of the other's commit, so the
# branch ends with every service's latest status, a linear history (no
# force push), and a STATUS.md that lists the services of both agents.
source "$(dirname "$0")/lib.sh"
command -v git >/dev/null || { echo "SKIP: git missing"; exit 77; }

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
GIT=(git -c user.name=Person -c user.email=person@example.com -c init.defaultBranch=main)
ROUNDS=6

it_setup
STATE_B=$WORK/state-b
cleanup_second() {
    local pids=() saved=$STATE
    STATE=$STATE_B
    [ -f "$STATE_B/haproxy/haproxy.pid" ] && pids+=($(cat "$STATE_B/haproxy/haproxy.pid"))
    for pid in $(haproxy_pids); do
        grep -qzxF "$STATE_B/haproxy/haproxy.cfg" "/proc/$pid/cmdline" 2>/dev/null && pids+=("$pid")
    done
    pids+=($(replica_pids))
    STATE=$saved
    stop_pids "${AGENT_PIDS[@]}" "${pids[@]}"
}
trap 'rc=$?; cleanup_second; (exit $rc); it_cleanup' EXIT

write_policy "[50, 100]" 1s 20s
ORIGIN=$WORK/origin.git
CLONE=$WORK/clone
"${GIT[@]}" init -q --bare "$ORIGIN"
"${GIT[@]}" init -q "$CLONE"
"${GIT[@]}" -C "$CLONE" remote add origin "$ORIGIN"
mkdir -p "$CLONE/hosts/a" "$CLONE/hosts/b"

# spec HOST NAME PORT VERSION
spec() {
    cat >"$CLONE/hosts/$1/$2.yaml" <<EOF
name: $2
version_name: $4
image_uri: registry.example.com/model:$4
http_options:
  host: 127.0.0.1
  port: $3
applications:
  - name: app
    route_prefix: /
    import_path: app:deployment
    deployments:
      - name: Model
        num_replicas: 1
        health_check_period_s: 1
        health_check_timeout_s: 2
        graceful_shutdown_timeout_s: 2
backend:
  process:
    applications:
      - name: app
        command: ["$MODEL_SERVER", "--port", "{port}"]
        health_path: /healthz
EOF
}
push() {
    "${GIT[@]}" -C "$CLONE" add -A
    "${GIT[@]}" -C "$CLONE" commit -q -m "$1"
    "${GIT[@]}" -C "$CLONE" push -q origin HEAD:main 2>>"$WORK/git.log"
}
# services: a1 a2 on host a, b1 b2 on host b
PORTS=([0]=$HTTP_PORT [1]=$((HTTP_PORT + 1)) [2]=$((HTTP_PORT + 2)) [3]=$((HTTP_PORT + 3)))
write_all() { # VERSION
    spec a a1 "${PORTS[0]}" "$1"
    spec a a2 "${PORTS[1]}" "$1"
    spec b b1 "${PORTS[2]}" "$1"
    spec b b2 "${PORTS[3]}" "$1"
}
write_all r0
push "round 0"

start_agent() { # HOST STATE PORT_LOW PORT_HIGH
    "$ROLLD" run --git "file://$ORIGIN" --dir "hosts/$1" --name "host-$1" --fetch-interval 60 \
        --state-dir "$2" --policies "$POL" --port-range "$3-$4" >>"$WORK/agent-$1.log" 2>&1 &
    AGENT_PIDS+=("$!")
}
HALF=$(((PORT_LOW + PORT_HIGH) / 2))
start_agent a "$STATE" "$PORT_LOW" "$HALF"
start_agent b "$STATE_B" $((HALF + 1)) "$PORT_HIGH"

# all_at VERSION: every service of both agents runs VERSION as its primary
all_at() {
    local state doc
    for state in "$STATE" "$STATE_B"; do
        doc=$("$ROLLD" status --state-dir "$state" --format json 2>/dev/null) || return 1
        [ "$(jq --arg v "$1" '[.services[] | select(.phase == "running" and .primary.version_name == $v)] | length' <<<"$doc")" = 2 ] || return 1
    done
}
wait_until 60 "every service at r0" all_at r0 || fatal "the four services did not come up"
pass "host a runs a1, a2 and host b runs b1, b2"

# rounds: a new version for all four in one push; both agents roll out and
# publish their status at the same time
for round in $(seq 1 $ROUNDS); do
    write_all "r$round"
    push "round $round"
    wait_until 60 "every service at r$round" all_at "r$round" || fail "round $round did not complete"
done
pass "$ROUNDS rounds rolled out on both hosts"

# the status branch: the latest of every service, from a fresh clone
branch_final() {
    rm -rf "$WORK/fresh"
    git clone -q -b rolld/status "file://$ORIGIN" "$WORK/fresh" 2>/dev/null || return 1
    local s
    for s in a1 a2 b1 b2; do
        grep -q "version_name: \"r$ROUNDS\"" "$WORK/fresh/status/$s.yaml" 2>/dev/null || return 1
        grep -q 'phase: "running"' "$WORK/fresh/status/$s.yaml" || return 1
    done
}
if wait_until 20 "the status branch to show r$ROUNDS running for all four" branch_final; then
    pass "the status branch has every service's latest status (nothing lost)"
else
    fail "the status branch lost a service's latest status"
    for s in a1 a2 b1 b2; do log "$s: $(grep -E 'phase|version_name' "$WORK/fresh/status/$s.yaml" 2>/dev/null | tr '\n' ' ')"; done
fi
check "each status file names its agent" grep -q 'agent: "host-a"' "$WORK/fresh/status/a1.yaml"
check "b's files name host-b" grep -q 'agent: "host-b"' "$WORK/fresh/status/b2.yaml"
for s in a1 a2 b1 b2; do
    check "STATUS.md lists $s" grep -q "$s" "$WORK/fresh/STATUS.md"
done
merges=$(git -C "$ORIGIN" rev-list --min-parents=2 --count rolld/status)
check_eq "merge commits on the status branch (linear history)" 0 "$merges"
commits=$(git -C "$ORIGIN" rev-list --count rolld/status)
authors=$(git -C "$ORIGIN" log --format='%s' rolld/status | grep -c 'host-b' || true)
log "status branch: $commits commits, $authors from host-b"
check "both agents committed to the status branch" test "$authors" -gt 0 -a "$authors" -lt "$commits"
rejected=$(grep -c 'rejected\|retr' "$WORK"/agent-*.log || true)
figure "two_agents_status_commits" "$commits"
finish
