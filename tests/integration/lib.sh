# Shared helpers of rolld's integration tests; sourced by each test script.
#
# Every test runs the real agent (`rolld run`), the real HAProxy it starts, real
# model-server replicas and wrk, on loopback only, in a temp dir of its own
# (${TMPDIR:-/tmp}/rolld-it.XXXX) with ports picked from a range based on $$.
# Each test is bounded in time (it re-executes itself under `timeout`), and a
# trap stops every process it started, by pid, even on failure or timeout:
# wrk, the agent(s), HAProxy's master and workers (pid file, `show proc` on the
# master socket, and the processes running STATE/haproxy/haproxy.cfg), and the
# replicas (found by ROLLD_STATE_DIR=<state dir> in /proc/*/environ).
#
# Synchronisation is by polling with a deadline (wait_until), never by sleeping
# a guessed time.
#
# Environment:
#   ROLLD, MODEL_SERVER   the binaries (default: build/rolld and
#                         build/examples/model-server/model-server of this tree)
#   IT_DEADLINE           seconds a test may take in all (default 180)
#   IT_KEEP=1             keep the temp dir even when the test passes
#   IT_VERBOSE=1          print every status poll

IT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IT_TOP=$(cd "$IT_LIB_DIR/../.." && pwd)

# ---- bounded in time: re-run this script under timeout(1) ----
# timeout sends SIGTERM to the whole process group at the deadline, which runs
# the cleanup trap; SIGKILL follows 20 s later if the cleanup itself hangs.
if [ -z "${IT_UNDER_TIMEOUT:-}" ]; then
    export IT_UNDER_TIMEOUT=1
    exec timeout -k 20 "${IT_DEADLINE:-180}" bash "$0" "$@"
fi

set -uo pipefail

ROLLD=${ROLLD:-$IT_TOP/build/rolld}
MODEL_SERVER=${MODEL_SERVER:-$IT_TOP/build/examples/model-server/model-server}
COUNTER_LUA=$IT_LIB_DIR/counter.lua
IT_NAME=$(basename "$0" .sh)
IT_PASSED=0
IT_FAILED=0
IT_SKIPPED=0
IT_SKIPS=()
IT_FIGURES=()
AGENT_PID=
AGENT_PIDS=()
WRK_PIDS=()
CHECKER_PIDS=()
declare -A LOAD_PID=()
declare -A CHECKER_PID=()
WORK=
STATE=
IT_CLEANED=0

# ---- time and output ----

now_ms() {
    local t=${EPOCHREALTIME//[.,]/}
    echo $((t / 1000))
}

IT_START_MS=$(now_ms)

log() {
    local t=$(($(now_ms) - IT_START_MS))
    printf '[%3d.%03d] %s\n' $((t / 1000)) $((t % 1000)) "$*"
}

# ---- assertions ----

pass() {
    IT_PASSED=$((IT_PASSED + 1))
    log "ok   - $*"
}

fail() {
    IT_FAILED=$((IT_FAILED + 1))
    log "FAIL - $*"
}

# check DESCRIPTION COMMAND...: passes when the command succeeds
check() {
    local description=$1
    shift
    if "$@"; then pass "$description"; else fail "$description"; fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then
        pass "$1 ($3)"
    else
        fail "$1: expected '$2', got '$3'"
    fi
}

# known_bug BUG DESCRIPTION COMMAND...: an assertion that a known, reported agent
# bug makes fail. When COMMAND fails it is skipped with the bug as the reason
# (IT_STRICT=1: failed instead); when it passes, it passes.
known_bug() {
    local bug=$1 description=$2
    shift 2
    if "$@"; then
        pass "$description"
    elif [ -n "${IT_STRICT:-}" ]; then
        fail "$description [known agent bug: $bug]"
    else
        IT_SKIPPED=$((IT_SKIPPED + 1))
        IT_SKIPS+=("$description [known agent bug: $bug]")
        log "SKIP - $description [known agent bug: $bug]"
    fi
}

# check_le DESCRIPTION A B: A <= B (integers)
check_le() {
    if [ "$2" -le "$3" ]; then pass "$1 ($2 <= $3)"; else fail "$1: $2 > $3"; fi
}

# fatal MESSAGE: a failure after which the test cannot go on
fatal() {
    fail "$*"
    diagnostics
    exit 1
}

figure() {
    IT_FIGURES+=("$*")
}

diagnostics() {
    log "---- diagnostics ----"
    [ -n "$STATE" ] && "$ROLLD" status --state-dir "$STATE" 2>&1 | sed 's/^/  status: /'
    if [ -n "$STATE" ] && [ -f "$STATE/status/svc.yaml" ]; then
        svc_json | jq -c '.history[-8:][]? | [.time, .event, .detail]' 2>/dev/null | sed 's/^/  history: /'
    fi
    [ -n "$WORK" ] && [ -f "$WORK/agent.log" ] && tail -n 30 "$WORK/agent.log" | sed 's/^/  agent: /'
    [ -n "$STATE" ] && [ -f "$STATE/haproxy/haproxy.log" ] &&
        tail -n 10 "$STATE/haproxy/haproxy.log" | sed 's/^/  haproxy: /'
    log "---- end of diagnostics ----"
}

finish() {
    echo
    echo "==== figures: $IT_NAME ===="
    local f
    for f in "${IT_FIGURES[@]}"; do
        echo "  $f"
    done
    echo "==== end of figures ===="
    if [ "$IT_SKIPPED" -gt 0 ]; then
        echo "$IT_SKIPPED skipped (known agent bugs; IT_STRICT=1 counts them as failures):"
        for f in "${IT_SKIPS[@]}"; do
            echo "  SKIP $f"
        done
    fi
    echo "$IT_PASSED passed, $IT_FAILED failed"
    [ "$IT_FAILED" -eq 0 ]
    exit $?
}

# ---- polling ----

# wait_until TIMEOUT_S DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it
# succeeds (0) or TIMEOUT_S seconds pass (1). WAITED_MS says how long it took.
wait_until() {
    local timeout_ms=$(($1 * 1000)) description=$2
    shift 2
    local start
    start=$(now_ms)
    while :; do
        if "$@"; then
            WAITED_MS=$(($(now_ms) - start))
            [ -n "${IT_VERBOSE:-}" ] && log "waited ${WAITED_MS} ms: $description"
            return 0
        fi
        if [ $(($(now_ms) - start)) -ge "$timeout_ms" ]; then
            WAITED_MS=$(($(now_ms) - start))
            log "timed out after ${WAITED_MS} ms waiting for: $description"
            return 1
        fi
        sleep 0.1
    done
}

# hold_for SECONDS DESCRIPTION COMMAND...: COMMAND must succeed on every poll for
# SECONDS seconds; returns 1 (and says what it saw) at the first poll where it fails.
hold_for() {
    local duration_ms=$(($1 * 1000)) description=$2
    shift 2
    local start polls=0
    start=$(now_ms)
    while [ $(($(now_ms) - start)) -lt "$duration_ms" ]; do
        polls=$((polls + 1))
        if ! "$@"; then
            log "after $(($(now_ms) - start)) ms and $polls polls no longer true: $description"
            return 1
        fi
        sleep 0.2
    done
    HELD_POLLS=$polls
    return 0
}

# ---- the test's world ----

port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -q "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Picks HTTP_PORT (the service's frontend) and PORT_LOW-PORT_HIGH (replicas) in
# 10000-19999 (below the ephemeral range and the agent's default replica range
# 20000-29999), from a block chosen by $$.
pick_ports() {
    local attempt block base p busy
    for attempt in $(seq 0 99); do
        block=$(((($$ * 7919) + attempt * 31) % 100))
        base=$((10000 + block * 100))
        busy=0
        for p in $(seq "$base" $((base + 99))); do
            if port_in_use "$p"; then busy=1; break; fi
        done
        if [ $busy -eq 0 ]; then
            HTTP_PORT=$base
            PORT_LOW=$((base + 10))
            PORT_HIGH=$((base + 99))
            return 0
        fi
    done
    echo "no free block of 100 ports in 10000-19999" >&2
    return 1
}

require_tools() {
    local t missing=()
    for t in haproxy wrk jq curl perl timeout; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [ -x "$ROLLD" ] || missing+=("$ROLLD")
    [ -x "$MODEL_SERVER" ] || missing+=("$MODEL_SERVER")
    if [ ${#missing[@]} -gt 0 ]; then
        echo "SKIP: missing ${missing[*]}"
        exit 77
    fi
}

it_setup() {
    require_tools
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolld-it.XXXX") || exit 1
    SRC=$WORK/services
    POL=$WORK/policies
    STATE=$WORK/state
    mkdir -p "$SRC" "$POL"
    trap it_cleanup EXIT
    trap 'log "signal: stopping (deadline ${IT_DEADLINE:-180} s reached?)"; fail "test did not finish (signal)"; exit 124' TERM INT HUP
    pick_ports || exit 1
    REPLICAS=${REPLICAS:-2}
    log "$IT_NAME: work dir $WORK, service port $HTTP_PORT, replica ports $PORT_LOW-$PORT_HIGH"
}

# write_policy STEPS STEP_DURATION START_TIMEOUT [ON_FAILURE] [--name NAME]
#              [--heavyweight canary|in_place] [--wave PERCENT] [--timeout DURATION]
# Writes POL/NAME.yaml (default: production); the agent reads policies at start.
write_policy() {
    STEP_DURATION_S=${2%s}
    local steps=$1 step_duration=$2 start_timeout=$3 on_failure=rollback
    local name=production heavyweight=canary wave="" timeout=10m
    shift 3
    if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
        on_failure=$1
        shift
    fi
    while [ $# -gt 0 ]; do
        case $1 in
        --name) name=$2; shift 2 ;;
        --heavyweight) heavyweight=$2; shift 2 ;;
        --wave) wave=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        *) echo "write_policy: unknown $1" >&2; return 2 ;;
        esac
    done
    {
        cat <<EOF
name: $name
description: integration test policy, short steps
canary:
  steps: $steps
  step_duration: $step_duration
  start_timeout: $start_timeout
  failure_threshold: 3
heavyweight: $heavyweight
on_failure: $on_failure
timeout: $timeout
EOF
        if [ -n "$wave" ]; then printf 'in_place:\n  wave_percent: %s\n' "$wave"; fi
    } >"$POL/$name.yaml"
}

# write_spec VERSION_NAME [--canary-percent N] [--args ', "--flag", "value"']
#            [--surge S] [--timeout DURATION] [--replicas N] [--gpus FRACTION]
#            [--user-config '{k: v}'] [--import-path P] [--image TAG] [--policy NAME]
#            [--reconfigure] [--command PATH]
# Writes the service "svc" atomically (written aside, renamed into the source
# dir, as editors and git do); SAVED_MS is the clock just before the rename.
# The options in the array SPEC_DEFAULTS come first (later ones win; --args add up).
write_spec() {
    local version=$1 percent="" args="" surge="" timeout="" replicas=$REPLICAS gpus=""
    local user_config="" import_path=app:deployment image=$1 policy=production reconfigure=""
    local command=$MODEL_SERVER
    shift
    set -- ${SPEC_DEFAULTS+"${SPEC_DEFAULTS[@]}"} "$@"
    while [ $# -gt 0 ]; do
        case $1 in
        --canary-percent) percent=$2; shift 2 ;;
        --args) args+=$2; shift 2 ;;
        --surge) surge=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --replicas) replicas=$2; shift 2 ;;
        --gpus) gpus=$2; shift 2 ;;
        --user-config) user_config=$2; shift 2 ;;
        --import-path) import_path=$2; shift 2 ;;
        --image) image=$2; shift 2 ;;
        --policy) policy=$2; shift 2 ;;
        --reconfigure) reconfigure=1; shift ;;
        --command) command=$2; shift 2 ;;
        *) echo "write_spec: unknown $1" >&2; return 2 ;;
        esac
    done
    local tmp=$WORK/svc.yaml.new
    {
        cat <<EOF
name: svc
version_name: $version
image_uri: registry.example.com/model:$image
http_options:
  host: 127.0.0.1
  port: $HTTP_PORT
applications:
  - name: app
    route_prefix: /
    import_path: $import_path
    deployments:
      - name: Model
        num_replicas: $replicas
        health_check_period_s: 1
        health_check_timeout_s: 2
        graceful_shutdown_timeout_s: 5
EOF
        [ -n "$user_config" ] && echo "        user_config: $user_config"
        [ -n "$gpus" ] && echo "        ray_actor_options: {num_cpus: 0.1, num_gpus: $gpus}"
        cat <<EOF
rollout:
  policy: $policy
EOF
        [ -n "$percent" ] && echo "  canary_percent: $percent"
        [ -n "$surge" ] && echo "  max_surge_percent: $surge"
        [ -n "$timeout" ] && echo "  timeout: $timeout"
        cat <<EOF
backend:
  process:
    applications:
      - name: app
        command: ["$command", "--port", "{port}"$args]
        health_path: /healthz
EOF
        if [ -n "$reconfigure" ]; then echo "        reconfigure_path: /reconfigure"; fi
    } >"$tmp"
    SAVED_MS=$(now_ms)
    mv "$tmp" "$SRC/svc.yaml"
}

agent_start() {
    "$ROLLD" run --source "$SRC" --state-dir "$STATE" --policies "$POL" \
        --port-range "$PORT_LOW-$PORT_HIGH" ${AGENT_ARGS+"${AGENT_ARGS[@]}"} >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    log "agent started, pid $AGENT_PID"
}

# ---- status ----

svc_json() {
    "$ROLLD" status svc --state-dir "$STATE" --format json 2>/dev/null | jq -c '.services[0] // empty' 2>/dev/null
}

# st JQ_FILTER: a field of svc's status, raw ("" when there is no status yet)
st() {
    svc_json | jq -r "$1" 2>/dev/null
}

# status_is JQ_BOOLEAN: true when the filter holds on svc's status
status_is() {
    local doc
    doc=$(svc_json)
    [ -n "$doc" ] || return 1
    [ -n "${IT_VERBOSE:-}" ] && log "status: $(jq -c '[.phase, .traffic.canary, .primary.version_name, .canary.version_name]' <<<"$doc")"
    [ "$(jq -r "$1" <<<"$doc" 2>/dev/null)" = true ]
}

wait_status() {
    local timeout=$1 filter=$2
    wait_until "$timeout" "status: $filter" status_is "$filter"
}

# traffic.canary read straight from STATE/status/svc.yaml with bash builtins
# only, so that it can be polled every 10 ms without forking
traffic_canary_fast() {
    local line in_traffic=0
    [ -f "$STATE/status/svc.yaml" ] || return 1
    while IFS= read -r line; do
        case $line in
        traffic:*) in_traffic=1 ;;
        "  canary: "*) [ $in_traffic = 1 ] && { echo "${line#  canary: }"; return 0; } ;;
        [a-z]*) in_traffic=0 ;;
        esac
    done <"$STATE/status/svc.yaml"
    return 1
}

# wait_traffic_change TIMEOUT_S: polls every 10 ms until traffic.canary > 0
wait_traffic_change() {
    local deadline=$(($(now_ms) + $1 * 1000)) value
    while [ "$(now_ms)" -lt $deadline ]; do
        value=$(traffic_canary_fast) && [ "${value:-0}" -gt 0 ] 2>/dev/null && return 0
        sleep 0.01
    done
    return 1
}

# frontend_requests: requests HAProxy's frontend of svc has taken (show stat req_tot)
frontend_requests() {
    runtime_command "$STATE/haproxy/admin.sock" "show stat" |
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "req_tot") c = i; next }
                 $1 == "svc" && $2 == "FRONTEND" { print $c + 0 }'
}

# load_flowing BEFORE: the frontend took 100 more requests than BEFORE
load_flowing() {
    [ "$(frontend_requests)" -gt $(($1 + 100)) ] 2>/dev/null
}

# ---- load (wrk) ----

URL() { echo "http://127.0.0.1:$HTTP_PORT/infer"; }

# load_start NAME [PAUSE_MS] [PIN]: continuous load with 8 connections until load_stop
load_start() {
    local name=$1 pause=${2:-2} pin=${3:-}
    local header=()
    [ -n "$pin" ] && header=(-H "X-Rolld-Version: $pin")
    wrk -t 2 -c 8 -d 600s --timeout 5s "${header[@]}" -s "$COUNTER_LUA" "$(URL)" -- "$pause" \
        >"$WORK/$name.wrk" 2>&1 &
    LOAD_PID[$name]=$!
    WRK_PIDS+=("$!")
    log "load '$name' started (wrk pid $!, 8 connections${pin:+, pinned to $pin})"
}

# load_stop NAME: stops it (SIGINT: wrk prints its summary) and leaves the
# result in $WORK/NAME.json
load_stop() {
    local name=$1 pid=${LOAD_PID[$1]}
    kill -INT "$pid" 2>/dev/null
    if ! wait_until 15 "wrk $name to stop" pid_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    wrk_result "$WORK/$name.wrk" >"$WORK/$name.json"
}

pid_gone() {
    ! kill -0 "$1" 2>/dev/null
}

wrk_result() {
    local line
    line=$(grep '^ROLLD_WRK ' "$1" | tail -n 1)
    if [ -z "$line" ]; then
        echo '{"requests":0,"answered":0,"non2xx":0,"errors":{"connect":0,"read":0,"write":0,"timeout":0,"status":0},"versions":{},"first_ms":{},"missing":true}'
    else
        echo "${line#ROLLD_WRK }"
    fi
}

# burst NAME DURATION [PIN] [CONNECTIONS]: a measuring wrk run in the foreground;
# the result is in $WORK/NAME.json and echoed
burst() {
    local name=$1 duration=$2 pin=${3:-} connections=${4:-8}
    local header=()
    [ -n "$pin" ] && header=(-H "X-Rolld-Version: $pin")
    timeout 30 wrk -t 2 -c "$connections" -d "$duration" --timeout 5s "${header[@]}" \
        -s "$COUNTER_LUA" "$(URL)" -- 0 >"$WORK/$name.wrk" 2>&1
    wrk_result "$WORK/$name.wrk" | tee "$WORK/$name.json"
}

# result_field FILE JQ_FILTER
rf() {
    jq -r "$2" "$1"
}

# connection errors of a wrk result (connect + read + write + timeout)
conn_errors() {
    jq -r '.errors.connect + .errors.read + .errors.write + .errors.timeout' "$1"
}

# ---- max surge (DESIGN.md rule 4) ----

# surge_peak_replicas N S: the most replicas both versions hold at one step of
# the rule 4 schedule (canary to S; traffic to S; primary down to 100-S; canary
# up as far as the 100+S budget allows; repeat), each version's count being
# ceil(N * capacity / 100): the bound on replicas alive during the rollout
surge_peak_replicas() {
    local n=$1 s=$2 traffic=0 primary=100 canary=$2 peak=0 count
    while :; do
        count=$(((n * primary + 99) / 100 + (n * canary + 99) / 100))
        [ "$count" -gt "$peak" ] && peak=$count
        [ "$traffic" -ge 100 ] && break
        traffic=$canary
        primary=$((100 - traffic))
        count=$(((n * primary + 99) / 100 + (n * canary + 99) / 100))
        [ "$count" -gt "$peak" ] && peak=$count
        canary=$((100 + s - primary))
        [ "$canary" -gt 100 ] && canary=100
    done
    echo "$peak"
}

# ---- invariant checker (invariants.pl) ----

# checker_start NAME OPTIONS...: samples router and replicas every 50 ms in the
# background (see invariants.pl for the checks and options) until checker_stop
checker_start() {
    local name=$1
    shift
    rm -f "$WORK/$name.stop" "$WORK/$name.summary.json"
    perl "$IT_LIB_DIR/invariants.pl" --state "$STATE" --out "$WORK/$name.samples" \
        --summary "$WORK/$name.summary.json" --stop-file "$WORK/$name.stop" "$@" \
        >>"$WORK/$name.checker.log" 2>&1 &
    CHECKER_PID[$name]=$!
    CHECKER_PIDS+=("$!")
    # its first sample is the state before whatever the test does next
    wait_until 10 "checker $name's first sample" test -s "$WORK/$name.samples" ||
        log "checker '$name' took no sample within 10 s"
    log "checker '$name' started (pid ${CHECKER_PID[$name]}): $*"
}

# checker_stop NAME: the summary is in $WORK/NAME.summary.json (CHECKER_SUMMARY)
checker_stop() {
    local name=$1 pid=${CHECKER_PID[$1]}
    touch "$WORK/$name.stop"
    if ! wait_until 10 "checker $name to stop" test -s "$WORK/$name.summary.json"; then
        kill -TERM "$pid" 2>/dev/null
        wait_until 5 "checker $name to stop" test -s "$WORK/$name.summary.json"
    fi
    wait "$pid" 2>/dev/null
    CHECKER_SUMMARY=$WORK/$name.summary.json
    [ -s "$CHECKER_SUMMARY" ] || echo '{"samples":0,"violations":{"checker":1},"examples":["no summary"],"max_alive":{},"max_total":0,"milestones":[],"milestones_matched":0}' >"$CHECKER_SUMMARY"
}

# check_invariants NAME KIND...: each kind of violation in the checker's summary is 0
# (and the checker took samples at least every 100 ms on average)
check_invariants() {
    local name=$1 kind n
    shift
    local f=$WORK/$name.summary.json
    check "$name: the checker sampled ($(jq -r .samples "$f") samples, one per $(jq -r .interval_ms "$f") ms)" \
        test "$(jq -r '.samples > 20 and .interval_ms <= 100' "$f")" = true
    for kind in "$@"; do
        n=$(jq -r --arg k "$kind" '.violations[$k] // 0' "$f")
        if [ "$n" = 0 ]; then
            pass "$name: no '$kind' violation at any sample"
        else
            fail "$name: $n samples broke '$kind'"
            jq -r --arg k "$kind" '.examples[] | select(contains(" " + $k + ": "))' "$f" | head -n 5 | sed 's/^/    /'
        fi
    done
    n=$(jq -r '.violations.checker // 0' "$f")
    [ "$n" = 0 ] || fail "$name: the checker left no summary"
}

# check_invariant_known_bug NAME KIND BUG: like check_invariants for one kind,
# through known_bug (skipped with BUG as the reason while the bug is there)
check_invariant_known_bug() {
    local name=$1 kind=$2 bug=$3 n
    local f=$WORK/$name.summary.json
    n=$(jq -r --arg k "$kind" '.violations[$k] // 0' "$f")
    [ "$n" = 0 ] || jq -r --arg k "$kind" '.examples[] | select(contains(" " + $k + ": "))' "$f" | head -n 3 | sed 's/^/    /'
    known_bug "$bug" "$name: no '$kind' violation at any sample ($n samples broke it)" test "$n" = 0
}

# ---- processes of this test ----

# pids of the replicas of this test's state dir (live processes only)
replica_pids() {
    local file pid
    for file in $(grep -lzxF "ROLLD_STATE_DIR=$STATE" /proc/[0-9]*/environ 2>/dev/null); do
        pid=${file#/proc/}
        pid=${pid%/environ}
        grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null || echo "$pid"
    done
}

# pids of the model-server processes of this test with a given version name
replica_pids_of_version() {
    local pid
    for pid in $(replica_pids); do
        grep -qzxF "ROLLD_VERSION_NAME=$1" "/proc/$pid/environ" 2>/dev/null && echo "$pid"
    done
}

# HAProxy processes of this test: those running STATE/haproxy/haproxy.cfg
haproxy_pids() {
    local file pid
    for file in $(grep -lzxF "$STATE/haproxy/haproxy.cfg" /proc/[0-9]*/cmdline 2>/dev/null); do
        pid=${file#/proc/}
        pid=${pid%/cmdline}
        grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null || echo "$pid"
    done
}

# haproxy_master_pids: those of haproxy_pids whose parent is not one of them
haproxy_master_pids() {
    local all pid ppid
    all=" $(haproxy_pids | tr '\n' ' ') "
    for pid in $all; do
        ppid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        case $all in *" $ppid "*) ;; *) echo "$pid" ;; esac
    done
}

# runtime_command SOCKET COMMAND: one command on an HAProxy CLI socket
runtime_command() {
    timeout 3 perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
        $s->autoflush(1);
        print $s "$ARGV[1]\n";
        shutdown($s, 1);
        print while <$s>;' "$1" "$2" 2>/dev/null
}

# haproxy_reloads: how many times the master reloaded (show proc on the master socket)
haproxy_reloads() {
    runtime_command "$STATE/haproxy/master.sock" "show proc" | awk '$2 == "master" { print $3 }'
}

kill_pids() {
    local signal=$1
    shift
    local pid
    for pid in "$@"; do
        kill "-$signal" "$pid" 2>/dev/null
    done
}

all_gone() {
    local pid
    for pid in "$@"; do
        [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 1
    done
    return 0
}

# stop PIDS...: SIGTERM, up to 5 s, then SIGKILL
stop_pids() {
    [ $# -gt 0 ] || return 0
    kill_pids TERM "$@"
    if ! wait_until 5 "pids $* to exit" all_gone "$@" >/dev/null; then
        kill_pids KILL "$@"
        wait_until 5 "pids $* to die" all_gone "$@" >/dev/null
    fi
}

it_cleanup() {
    local rc=$?
    [ "$IT_CLEANED" = 1 ] && return
    IT_CLEANED=1
    trap - EXIT TERM INT HUP
    local pids=() pid
    # wrk and the invariant checkers
    for pid in "${WRK_PIDS[@]}" "${CHECKER_PIDS[@]}"; do
        [ -d "/proc/$pid" ] && pids+=("$pid")
    done
    kill_pids KILL "${pids[@]}"
    # agents first, so that nothing restarts what is stopped next
    pids=()
    for pid in "${AGENT_PIDS[@]}"; do
        [ -d "/proc/$pid" ] && pids+=("$pid")
    done
    stop_pids "${pids[@]}"
    if [ -n "$STATE" ]; then
        # HAProxy: the master from its pid file and from the processes running
        # our config, the workers from `show proc` and from the same scan
        pids=()
        [ -f "$STATE/haproxy/haproxy.pid" ] && pids+=($(cat "$STATE/haproxy/haproxy.pid"))
        if [ -S "$STATE/haproxy/master.sock" ]; then
            pids+=($(runtime_command "$STATE/haproxy/master.sock" "show proc" | awk '/^[0-9]+ / {print $1}'))
        fi
        pids+=($(haproxy_pids))
        # only processes that really run our config
        local ours=()
        for pid in $(printf '%s\n' "${pids[@]}" | sort -un); do
            grep -qzxF "$STATE/haproxy/haproxy.cfg" "/proc/$pid/cmdline" 2>/dev/null && ours+=("$pid")
        done
        stop_pids "${ours[@]}"
        # replicas
        stop_pids $(replica_pids)
        local left
        left=$( (replica_pids; haproxy_pids) | tr '\n' ' ')
        for pid in "${AGENT_PIDS[@]}" "${WRK_PIDS[@]}"; do
            [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" && left+="$pid "
        done
        if [ -n "${left// /}" ]; then
            echo "cleanup: processes still running: $left"
            rc=1
        fi
    fi
    wait 2>/dev/null
    if [ -n "$WORK" ]; then
        if [ "$rc" -ne 0 ] || [ "$IT_FAILED" -ne 0 ] || [ -n "${IT_KEEP:-}" ]; then
            echo "cleanup: kept $WORK (agent.log, state/, *.wrk)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

# ---- common steps ----

# start_v1: the first version comes up and serves
start_v1() {
    write_spec v1
    agent_start
    if ! wait_status 30 '.phase == "running" and .primary.version_name == "v1" and (.primary.replicas | map(.ready) | add) == '"$REPLICAS"; then
        fatal "v1 did not come up"
    fi
    pass "v1 running with $REPLICAS ready replicas after $WAITED_MS ms"
    if ! wait_until 10 "the frontend answers" frontend_answers; then
        fatal "HAProxy does not answer on 127.0.0.1:$HTTP_PORT"
    fi
}

frontend_answers() {
    curl -s --max-time 2 "$(URL)" 2>/dev/null | grep -q '"version_name":"v1"'
}

# canary share in percent (one decimal) of a wrk result file
canary_share() {
    jq -r --arg v "$2" '(.versions[$v] // 0) as $c | ([.versions[]] | add // 0) as $t |
        if $t == 0 then "nan" else (($c * 1000 / $t) | round / 10 | tostring) end' "$1"
}

# |a - b| <= tolerance for decimals
within() {
    awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'
}

no_replicas_of() {
    [ -z "$(replica_pids_of_version "$1")" ]
}

has_replicas_of() {
    [ -n "$(replica_pids_of_version "$1")" ]
}
