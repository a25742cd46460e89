#!/usr/bin/env bash
# agent_bench.sh: figures of the agent (`rolld run`), printed as one table. A
# benchmark, not a timed test: nothing here passes or fails on a figure; the
# table says which aims are met.
#
#   1. idle cost: N services (default 1,000) on the process backend, one
#      application, one deployment, one replica of the example model server
#      each, each with its own HAProxy frontend on 127.0.0.1. Once all are
#      running and a settling time has passed, the agent's VmRSS
#      (/proc/PID/status) and CPU time (utime+stime of /proc/PID/stat, and
#      its threads' /proc/PID/task/*/schedstat in ns as a cross-check) are
#      sampled every second over an idle window (default 60 s). Replicas and HAProxy are not counted.
#      The agent has a metrics listener, as the shipped rolld.yaml has, and
#      /metrics is scraped every --scrape-s seconds (default 15; 0: no
#      listener) within the window, so its rendering counts too.
#      Aims (the issue): RSS under 16 MiB, CPU under 0.5% of one core. When the
#      agent misses one (or with --profile always), `perf record` (DWARF call
#      graphs) over another idle window says where the time goes; when it
#      misses the RSS aim, its largest mappings and glibc's malloc_stats()
#      (called through gdb: heap taken from the system vs. in live use) say
#      what the memory is.
#   2. save -> first router change: one service, 2 replicas, a canary paused
#      at 1% (`rollout.canary_percent: 1`, same version throughout). Each save
#      raises canary_percent by one (2, 3, ... as many as --changes): an atomic
#      save (written aside, renamed into the source dir) that moves traffic at
#      once, with no replica to start: a paused canary whose canary_percent goes
#      up continues (canary_progressing), and with the policy's step_duration
#      0s the next step is the new canary_percent itself. (Lowering
#      canary_percent never moves traffic back, rollout.c: the canary just pauses
#      where it is; so the sequence only goes up.) The time is from the rename
#      to the first `show servers state` answer in which the split backend's
#      canary servers carry that share (HAProxy's weights, polled in one
#      interactive runtime API session every --interval-ms). The same with the
#      N services of part 1 still loaded (--loaded-changes; 0 skips it).
#   3. decision -> HAProxy: the agent records each traffic step in the
#      service's history (`traffic_shifted`, `canary traffic N%`, time_ms: the
#      agent's wall clock when it decided), saves its state, then talks to
#      HAProxy; it also logs the step (`svc: canary_progressing
#      (traffic_shifted: canary traffic N%)`, a ms timestamp under --log-format
#      json) - but only while the history grows (see the notes). The figure is
#      from time_ms (read from STATE/state.json, whose history keeps 20 events,
#      after every few steps) to the first poll that sees the N% split. Over
#      the steps of --rollouts full canary rollouts (policy steps 10, 20, ...
#      100, step_duration 1s, so each step is a timer's decision, not a
#      save's), and also over the saves of part 2; the table says how many of
#      these decisions had their log line.
#
# Usage (run it on an otherwise idle machine; about 7 minutes on 2 cores, 3 of
# them for the 1,000 services to start):
#   tests/bench/agent_bench.sh [--build DIR] [--services N] [--idle-s S]
#       [--settle-s S] [--changes N] [--loaded-changes N] [--rollouts N]
#       [--interval-ms MS] [--profile auto|always|never] [--profile-s S]
#       [--start-timeout S] [--scrape-s S] [--keep] [--report FILE]
#   --build DIR: rolld and examples/model-server/model-server from DIR
#   (default build/; a RelWithDebInfo or Release build, for perf's symbols
#   RelWithDebInfo); ROLLD and MODEL_SERVER override each.
#
# Everything runs on loopback in a temp dir of its own
# (${TMPDIR:-/tmp}/rolld-agentbench.XXXX, removed at the end unless --keep),
# on ports below the ephemeral range picked free at start. The whole run is
# bounded (AB_DEADLINE, default 1200 s), and every process it started is
# stopped by pid at the end, even on failure: the agents, HAProxy's master and
# workers (pid file, `show proc` on the master socket, processes running the
# state dir's haproxy.cfg) and the replicas (ROLLD_STATE_DIR=<state dir> in
# /proc/PID/environ).

AB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AB_TOP=$(cd "$AB_DIR/../.." && pwd)

if [ -z "${AB_UNDER_TIMEOUT:-}" ]; then
    export AB_UNDER_TIMEOUT=1
    exec timeout -k 30 "${AB_DEADLINE:-1200}" bash "$0" "$@"
fi

set -uo pipefail

BUILD=$AB_TOP/build
SERVICES=1000
IDLE_S=60
SETTLE_S=20
CHANGES=60
LOADED_CHANGES=50
ROLLOUTS=5
SCRAPE_S=15
INTERVAL_MS=1
PROFILE=auto
PROFILE_S=30
START_TIMEOUT=480
KEEP=
REPORT=
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --idle-s) IDLE_S=$2; shift 2 ;;
    --settle-s) SETTLE_S=$2; shift 2 ;;
    --changes) CHANGES=$2; shift 2 ;;
    --loaded-changes) LOADED_CHANGES=$2; shift 2 ;;
    --rollouts) ROLLOUTS=$2; shift 2 ;;
    --scrape-s) SCRAPE_S=$2; shift 2 ;;
    --interval-ms) INTERVAL_MS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --profile-s) PROFILE_S=$2; shift 2 ;;
    --start-timeout) START_TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --report) REPORT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "agent_bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$CHANGES" -ge 1 ] && [ "$CHANGES" -le 98 ] || { echo "--changes: 1 to 98" >&2; exit 2; }
[ "$LOADED_CHANGES" -ge 0 ] && [ "$LOADED_CHANGES" -le 98 ] || { echo "--loaded-changes: 0 to 98" >&2; exit 2; }
[[ "$SCRAPE_S" =~ ^[0-9]+$ ]] || { echo "--scrape-s: seconds, 0 for no metrics listener" >&2; exit 2; }

ROLLD=${ROLLD:-$BUILD/rolld}
MODEL_SERVER=${MODEL_SERVER:-$BUILD/examples/model-server/model-server}
# absolute: the replicas run in their own working dirs
[ -e "$ROLLD" ] && ROLLD=$(realpath "$ROLLD")
[ -e "$MODEL_SERVER" ] && MODEL_SERVER=$(realpath "$MODEL_SERVER")
ROUTER_PL=$AB_DIR/agent_bench_router.pl

WORK=
STATES=()
AGENT_PIDS=()
HELPER_PIDS=()
CLEANED=0
ROWS=()
NOTES=()

now_ms() {
    local t=${EPOCHREALTIME//[.,]/}
    echo $((t / 1000))
}
START_MS=$(now_ms)

log() {
    local t=$(($(now_ms) - START_MS))
    printf '[%4d.%03d] %s\n' $((t / 1000)) $((t % 1000)) "$*" >&2
}

row() { ROWS+=("$(printf '| %-2s | %-52s | %-58s | %-16s |' "$1" "$2" "$3" "${4:-}")"); }
note() { NOTES+=("$*"); }

# ---- processes ----

alive() {
    [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

all_gone() {
    local pid
    for pid in "$@"; do alive "$pid" && return 1; done
    return 0
}

# stop_pids SECONDS PIDS...: SIGTERM, up to SECONDS, then SIGKILL
stop_pids() {
    local wait_s=$1 pid deadline
    shift
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null
    deadline=$(($(now_ms) + wait_s * 1000))
    while ! all_gone "$@" && [ "$(now_ms)" -lt $deadline ]; do sleep 0.1; done
    for pid in "$@"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
    deadline=$(($(now_ms) + 5000))
    while ! all_gone "$@" && [ "$(now_ms)" -lt $deadline ]; do sleep 0.1; done
}

# one command on an HAProxy CLI socket
runtime_command() {
    timeout 3 perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
        $s->autoflush(1);
        print $s "$ARGV[1]\n";
        shutdown($s, 1);
        print while <$s>;' "$1" "$2" 2>/dev/null
}

# live pids whose /proc/PID/FILE holds the NUL-separated item ITEM
pids_with() {
    local file=$1 item=$2 f pid
    for f in $(grep -lzxF "$item" /proc/[0-9]*/"$file" 2>/dev/null); do
        pid=${f#/proc/}
        pid=${pid%/*}
        alive "$pid" && echo "$pid"
    done
}

replica_pids() { pids_with environ "ROLLD_STATE_DIR=$1"; }
haproxy_pids() { pids_with cmdline "$1/haproxy/haproxy.cfg"; }

# stop_state STATE: HAProxy's master and workers and the replicas of a state
# dir (its agent is stopped first, by the caller)
stop_state() {
    local state=$1 pids=() pid ours=()
    [ -f "$state/haproxy/haproxy.pid" ] && pids+=($(cat "$state/haproxy/haproxy.pid"))
    if [ -S "$state/haproxy/master.sock" ]; then
        pids+=($(runtime_command "$state/haproxy/master.sock" "show proc" | awk '/^[0-9]+ / {print $1}'))
    fi
    pids+=($(haproxy_pids "$state"))
    for pid in $(printf '%s\n' "${pids[@]}" | sort -un); do
        grep -qzxF "$state/haproxy/haproxy.cfg" "/proc/$pid/cmdline" 2>/dev/null && ours+=("$pid")
    done
    stop_pids 10 "${ours[@]}"
    stop_pids 20 $(replica_pids "$state")
}

stop_agent() {
    local pid=$1
    alive "$pid" && stop_pids 20 "$pid"
    wait "$pid" 2>/dev/null
}

cleanup() {
    local rc=$? pid state left=
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap - EXIT TERM INT HUP
    for pid in "${HELPER_PIDS[@]}"; do alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
    for pid in "${AGENT_PIDS[@]}"; do stop_agent "$pid"; done
    for state in "${STATES[@]}"; do
        stop_state "$state"
        left+="$( (replica_pids "$state"; haproxy_pids "$state") | tr '\n' ' ')"
    done
    for pid in "${AGENT_PIDS[@]}" "${HELPER_PIDS[@]}"; do alive "$pid" && left+="$pid "; done
    if [ -n "${left// /}" ]; then
        echo "cleanup: processes still running: $left" >&2
        rc=1
    fi
    wait 2>/dev/null
    if [ -n "$WORK" ]; then
        if [ -n "$KEEP" ] || [ "$rc" -ne 0 ]; then
            echo "cleanup: kept $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

die() {
    log "FATAL: $*"
    exit 1
}

# ---- statistics ----

# stats: numbers on stdin -> "n min p50 p99 max mean" (nearest rank: p50 is
# value ceil(n/2) in order, p99 value ceil(0.99 n), the max under 100 samples)
stats() {
    sort -g | awk '{ v[NR] = $1; s += $1 }
        END {
            if (NR == 0) { print "0 - - - - -"; exit }
            i50 = int((NR * 50 + 99) / 100); i99 = int((NR * 99 + 99) / 100)
            printf "%d %.1f %.1f %.1f %.1f %.1f\n", NR, v[1], v[i50], v[i99], v[NR], s / NR
        }'
}

# describe LABEL "n min p50 p99 max mean" -> text for the table
describe() {
    local n min p50 p99 max mean
    read -r n min p50 p99 max mean <<<"$1"
    if [ "$n" = 0 ]; then
        echo "no samples"
    else
        echo "p50 $p50 ms, p99 $p99 ms (min $min, max $max; n=$n)"
    fi
}

# ---- machine ----

machine_checks() {
    local need_fd hard avail_kib max_by_mem ephemeral_low ephemeral_high
    CPUS=$(nproc)
    avail_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range
    EPHEMERAL_LOW=$ephemeral_low
    # the agent: a pidfd per replica, health-check sockets, inotify, sockets;
    # HAProxy: one listener per service and its connections
    need_fd=$((SERVICES * 3 + 1024))
    if [ "$(ulimit -n)" -lt "$need_fd" ]; then
        hard=$(ulimit -Hn)
        ulimit -n $((hard < need_fd ? hard : need_fd)) 2>/dev/null
    fi
    if [ "$(ulimit -n)" -lt "$need_fd" ]; then
        local fit=$((($(ulimit -n) - 1024) / 3))
        note "ulimit -n is $(ulimit -n): not enough for $SERVICES services; measured with $fit"
        SERVICES=$fit
    fi
    # a model-server replica takes about 2 MiB; keep half the memory free
    max_by_mem=$((avail_kib / 2 / 4096))
    if [ "$SERVICES" -gt "$max_by_mem" ]; then
        note "MemAvailable $((avail_kib / 1024)) MiB: measured with $max_by_mem services, not $SERVICES"
        SERVICES=$max_by_mem
    fi
    if [ "$(ulimit -u)" != unlimited ] && [ "$(ulimit -u)" -lt $((SERVICES * 4 + 512)) ]; then
        note "ulimit -u $(ulimit -u) may be too low for $SERVICES replicas"
    fi
    LIMITS="$CPUS CPUs, MemAvailable $((avail_kib / 1024)) MiB, ulimit -n $(ulimit -n), ulimit -u $(ulimit -u), pid_max $(cat /proc/sys/kernel/pid_max), ephemeral ports $ephemeral_low-$ephemeral_high"
}

# pick_ports SPAN: BASE, the start of SPAN free ports below the ephemeral range
# (and above 20000: the integration tests take 10000-19999), none in use by
# any socket; the starting point depends on $$ so that parallel runs differ
pick_ports() {
    BASE=$(perl -e '
        my ($span, $limit, $seed) = @ARGV;
        my %used;
        for my $f ("/proc/net/tcp", "/proc/net/tcp6") {
            open(my $fh, "<", $f) or next;
            while (<$fh>) { $used{hex $1} = 1 if /^\s*\d+:\s+[0-9A-F]+:([0-9A-F]{4})\s/ }
        }
        my @bases;
        for (my $b = 20000; $b + $span <= $limit; $b += 100) { push @bases, $b }
        exit 1 unless @bases;
        for my $i (0 .. $#bases) {
            my $b = $bases[($i + $seed) % @bases];
            next if grep { $used{$_} } $b .. $b + $span - 1;
            print "$b\n";
            exit 0;
        }
        exit 1;' "$1" "$EPHEMERAL_LOW" "$$") || return 1
}

# ---- specs and policies ----

write_policies() {
    cat >"$POL/production.yaml" <<EOF
name: production
description: agent_bench, rollouts of ten 1 s steps
canary:
  steps: [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
  step_duration: 1s
  start_timeout: 30m
  failure_threshold: 3
heavyweight: canary
on_failure: rollback
timeout: 60m
EOF
    cat >"$POL/instant.yaml" <<EOF
name: instant
description: agent_bench, a traffic step as soon as canary_percent rises
canary:
  steps: [100]
  step_duration: 0s
  start_timeout: 2m
  failure_threshold: 3
heavyweight: canary
on_failure: rollback
timeout: 60m
EOF
}

# service_yaml NAME VERSION PORT REPLICAS POLICY [CANARY_PERCENT]
service_yaml() {
    local name=$1 version=$2 port=$3 replicas=$4 policy=$5 percent=${6:-}
    printf 'name: %s\nversion_name: %s\nimage_uri: registry.example.com/model:%s\n' \
        "$name" "$version" "$version"
    printf 'http_options:\n  host: 127.0.0.1\n  port: %s\n' "$port"
    printf 'applications:\n  - name: app\n    route_prefix: /\n    import_path: app:deployment\n'
    printf '    deployments:\n      - name: Model\n        num_replicas: %s\n' "$replicas"
    printf '        graceful_shutdown_timeout_s: 5\n'
    printf 'rollout:\n  policy: %s\n' "$policy"
    [ -n "$percent" ] && printf '  canary_percent: %s\n' "$percent"
    printf 'backend:\n  process:\n    applications:\n      - name: app\n'
    printf '        command: ["%s", "--port", "{port}"]\n        health_path: /healthz\n' \
        "$MODEL_SERVER"
}

# save_spec SRC NAME VERSION PORT REPLICAS POLICY [PERCENT]: an atomic save
save_spec() {
    local src=$1 name=$2
    shift 2
    service_yaml "$name" "$@" >"$WORK/$name.yaml.new"
    mv "$WORK/$name.yaml.new" "$src/$name.yaml"
}

start_agent() { # SRC STATE LOW HIGH LOG [ARGS...]
    "$ROLLD" run --source "$1" --state-dir "$2" --policies "$POL" --port-range "$3-$4" \
        --log-format json "${@:6}" >>"$5" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    STATES+=("$2")
}

svc_json() { # STATE
    "$ROLLD" status svc --state-dir "$1" --format json 2>/dev/null | jq -c '.services[0] // empty' 2>/dev/null
}

# wait_svc STATE TIMEOUT_S JQ_BOOLEAN
wait_svc() {
    local deadline=$(($(now_ms) + $2 * 1000))
    while [ "$(now_ms)" -lt $deadline ]; do
        [ "$(svc_json "$1" | jq -r "$3" 2>/dev/null)" = true ] && return 0
        alive "$AGENT_PID" || return 1
        sleep 0.25
    done
    log "timed out waiting for svc: $3; status: $(svc_json "$1" | jq -c '[.phase, .traffic, .last_error]')"
    return 1
}

phase_count() { # STATE PHASE
    local files=("$1"/status/*.yaml)
    [ -e "${files[0]}" ] || { echo 0; return; }
    grep -l "^phase: \"$2\"" "${files[@]}" 2>/dev/null | wc -l
}

# ---- /proc figures of a process ----

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
# utime + stime in clock ticks (fields 14 and 15; the command name is in parentheses)
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) }
    local -a f=($stat)
    echo $((f[11] + f[12]))
}
# run time in ns of all the process's threads (/proc/PID/schedstat is the
# main thread's alone; the metrics endpoint has a thread of its own)
run_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $1 } END { printf "%.0f\n", n }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---- part 1: idle cost with SERVICES services ----

BIG_AGENT=
part_idle() {
    local n=$SERVICES i t0 running failed=0 last_log=0 elapsed
    FAILED_MAX=0
    BIG_SRC=$WORK/big/services
    BIG_STATE=$WORK/big/state
    mkdir -p "$BIG_SRC"
    log "part 1: writing $n services (frontends $BASE-$((BASE + n - 1)), replicas $BIG_PORT_LOW-$BIG_PORT_HIGH)"
    local name
    for ((i = 0; i < n; i++)); do
        printf -v name 's%04d' "$i"
        service_yaml "$name" v1 $((BASE + i)) 1 production >"$BIG_SRC/$name.yaml"
    done
    t0=$(now_ms)
    local metrics=()
    [ "$SCRAPE_S" -gt 0 ] && metrics=(--metrics-listen "127.0.0.1:$METRICS_PORT")
    start_agent "$BIG_SRC" "$BIG_STATE" "$BIG_PORT_LOW" "$BIG_PORT_HIGH" "$WORK/big/agent.log" \
        "${metrics[@]}"
    BIG_AGENT=$AGENT_PID
    log "part 1: agent pid $BIG_AGENT; waiting for $n services to be running (at most $START_TIMEOUT s)"
    while :; do
        running=$(phase_count "$BIG_STATE" running)
        elapsed=$(($(now_ms) - t0))
        [ "$running" -ge "$n" ] && break
        # a service whose replica was not ready within the policy's start_timeout
        # is `failed` until the replica gets ready (then `running`)
        failed=$(phase_count "$BIG_STATE" failed)
        [ "$failed" -gt "$FAILED_MAX" ] && FAILED_MAX=$failed
        alive "$BIG_AGENT" || die "the agent exited; $(tail -n 5 "$WORK/big/agent.log")"
        if [ $elapsed -ge $((START_TIMEOUT * 1000)) ]; then
            note "only $running of $n services were running after $START_TIMEOUT s"
            break
        fi
        if [ $((elapsed - last_log)) -ge 10000 ]; then
            log "part 1: $running running, $failed failed after $((elapsed / 1000)) s (agent CPU time $(($(cpu_ticks "$BIG_AGENT") / $(getconf CLK_TCK))) s, RSS $(mib "$(rss_kib "$BIG_AGENT")") MiB)"
            last_log=$elapsed
        fi
        sleep 1
    done
    RUNNING=$running
    [ "$FAILED_MAX" -gt 0 ] && note "during the start up to $FAILED_MAX services were 'failed' (start deadline passed before their replica was seen ready) and recovered"
    STARTUP_CPU=$(awk -v t="$(cpu_ticks "$BIG_AGENT")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }')
    STARTUP_HWM=$(status_kib "$BIG_AGENT" VmHWM)
    STARTUP_S=$(awk -v ms="$elapsed" 'BEGIN { printf "%.1f", ms / 1000 }')
    log "part 1: $running services running after $STARTUP_S s; settling $SETTLE_S s"
    sleep "$SETTLE_S"

    local pid=$BIG_AGENT t_start t_end ticks0 ticks1 ns0 ns1 prev_ns ns per_second=()
    local rss rss_min= rss_max=0 rss_sum=0 count=0 deadline next scrape scrapes=0
    local scrape_bytes=0 scrape_ms_max=0 scrape_failed=0
    log "part 1: idle window of $IDLE_S s"
    t_start=${EPOCHREALTIME/[,]/.}
    ticks0=$(cpu_ticks "$pid")
    ns0=$(run_ns "$pid")
    prev_ns=$ns0
    RSS_START=$(rss_kib "$pid")
    next=$(now_ms)
    deadline=$((next + IDLE_S * 1000))
    while [ "$(now_ms)" -lt $deadline ]; do
        next=$((next + 1000))
        while [ "$(now_ms)" -lt $next ]; do sleep 0.05; done
        alive "$pid" || die "the agent exited during the idle window"
        # scraped as Prometheus would, its rendering in the agent's figures
        if [ "$SCRAPE_S" -gt 0 ] && [ $((count % SCRAPE_S)) = 0 ]; then
            if scrape=$(curl -sf -o /dev/null -w '%{size_download} %{time_total}' \
                "http://127.0.0.1:$METRICS_PORT/metrics"); then
                scrapes=$((scrapes + 1))
                scrape_bytes=${scrape%% *}
                scrape=$(awk -v t="${scrape##* }" 'BEGIN { printf "%d", t * 1000 }')
                [ "$scrape" -gt "$scrape_ms_max" ] && scrape_ms_max=$scrape
            else
                scrape_failed=$((scrape_failed + 1))
            fi
        fi
        rss=$(rss_kib "$pid")
        ns=$(run_ns "$pid")
        per_second+=($((ns - prev_ns)))
        prev_ns=$ns
        [ -z "$rss_min" ] || [ "$rss" -lt "$rss_min" ] && rss_min=$rss
        [ "$rss" -gt "$rss_max" ] && rss_max=$rss
        rss_sum=$((rss_sum + rss))
        count=$((count + 1))
    done
    t_end=${EPOCHREALTIME/[,]/.}
    ticks1=$(cpu_ticks "$pid")
    ns1=$(run_ns "$pid")
    local hz
    hz=$(getconf CLK_TCK)
    IDLE_SECONDS=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
    IDLE_CPU=$(awk -v t=$((ticks1 - ticks0)) -v hz="$hz" -v s="$IDLE_SECONDS" 'BEGIN { printf "%.2f", 100 * t / hz / s }')
    IDLE_CPU_NS=$(awk -v n=$((ns1 - ns0)) -v s="$IDLE_SECONDS" 'BEGIN { printf "%.2f", 100 * n / 1e9 / s }')
    # each second's run time: the median is the steady work (health checks,
    # autoscale ticks), the largest a second with a resync pass (every 10 s)
    read -r IDLE_CPU_MEDIAN_S IDLE_CPU_MAX_S < <(printf '%s\n' "${per_second[@]}" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.2f %.1f\n", v[int((NR + 1) / 2)] / 1e7, v[NR] / 1e7 }')
    RSS_END=$(rss_kib "$pid")
    local hwm anon file threads fds
    hwm=$(status_kib "$pid" VmHWM)
    anon=$(status_kib "$pid" RssAnon)
    file=$(status_kib "$pid" RssFile)
    threads=$(status_kib "$pid" Threads)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    local rss_mean=$((rss_sum / (count ? count : 1)))
    IDLE_RSS_MAX=$rss_max
    local label="$RUNNING services"
    [ "$RUNNING" -lt "$SERVICES" ] && label="$RUNNING of $SERVICES services running"
    row 1 "agent RSS, idle, $label" "$(mib "$rss_mean") MiB mean ($(mib "$rss_min")-$(mib "$rss_max") over ${IDLE_SECONDS} s)" \
        "< 16 MiB: $([ "$rss_max" -lt $((16 * 1024)) ] && echo met || echo MISSED)"
    row "" "  of which anonymous / file-backed (end of window)" "$(mib "$anon") / $(mib "$file") MiB; peak (VmHWM) $(mib "$hwm") MiB" ""
    row 1 "agent CPU, idle, utime+stime / wall (% of a core)" "${IDLE_CPU}% ($(((ticks1 - ticks0))) ticks of 1/$hz s)" \
        "< 0.5%: $(awk -v c="$IDLE_CPU" 'BEGIN { print (c < 0.5) ? "met" : "MISSED" }')"
    row "" "  cross-check: threads' schedstat run time / wall" "${IDLE_CPU_NS}%" ""
    row "" "  1 s samples (schedstat): median; busiest" "${IDLE_CPU_MEDIAN_S}%; ${IDLE_CPU_MAX_S}%" ""
    row "" "  services running at the end of the window" "$(phase_count "$BIG_STATE" running) of $n" ""
    row "" "  start: all running after (agent CPU; peak RSS)" "$STARTUP_S s ($STARTUP_CPU s CPU; VmHWM $(mib "$STARTUP_HWM") MiB)" ""
    local hp_rss=0 p rs_sum=0 rs_n=0
    for p in $(haproxy_pids "$BIG_STATE"); do hp_rss=$((hp_rss + $(rss_kib "$p"))); done
    for p in $(replica_pids "$BIG_STATE" | head -n 50); do rs_sum=$((rs_sum + $(rss_kib "$p"))); rs_n=$((rs_n + 1)); done
    row "" "  (not counted) HAProxy RSS; one replica's RSS" "$(mib "$hp_rss") MiB; $(mib $((rs_sum / (rs_n ? rs_n : 1)))) MiB mean of $rs_n" ""
    row "" "  agent threads, open fds" "$threads threads, $fds fds" ""
    if [ "$SCRAPE_S" -gt 0 ]; then
        row "" "  /metrics scraped every $SCRAPE_S s (in the figures)" "$scrapes scrapes of $((scrape_bytes / 1024)) KiB, slowest $scrape_ms_max ms$([ "$scrape_failed" -gt 0 ] && echo "; $scrape_failed failed")" ""
    else
        row "" "  /metrics" "no listener (--scrape-s 0)" ""
    fi
    log "part 1: RSS $(mib "$rss_mean") MiB (max $(mib "$rss_max")), CPU ${IDLE_CPU}% (schedstat ${IDLE_CPU_NS}%)"

    local missed=0
    [ "$rss_max" -ge $((16 * 1024)) ] && missed=1
    awk -v c="$IDLE_CPU" 'BEGIN { exit !(c >= 0.5) }' && missed=1
    if [ "$PROFILE" = always ] || { [ "$PROFILE" = auto ] && [ $missed = 1 ]; }; then
        profile_idle "$pid"
    fi
}

# perf over another idle window: the agent's hottest functions (self time,
# and with their callees), and its largest mappings
profile_idle() {
    local pid=$1 data=$WORK/perf.data
    if ! command -v perf >/dev/null; then
        note "perf is not installed: no profile"
        return
    fi
    log "part 1: perf record over $PROFILE_S s of idleness"
    # DWARF call graphs: the build has no frame pointers
    if ! perf record -q -F 499 --call-graph dwarf,32768 -p "$pid" -o "$data" -- sleep "$PROFILE_S" \
        >"$WORK/perf.record.log" 2>&1; then
        note "perf record failed: $(tail -n 2 "$WORK/perf.record.log")"
        return
    fi
    perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null |
        grep -E '^ +[0-9]' | awk '{ printf "%8s  %s\n", $1, $2 }' | head -n 8 >"$WORK/perf.dso"
    perf report -i "$data" --stdio --no-children --sort dso,symbol --percent-limit 1 -g none 2>/dev/null |
        grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//' | head -n 25 >"$WORK/perf.self"
    # user-space functions with what they call (the agent's own code paths)
    perf report -i "$data" --stdio --children --sort symbol --percent-limit 2.5 -g none 2>/dev/null |
        grep -E '^ +[0-9].*\[\.\]' | grep -v -E '\[\.\] (0x[0-9a-f]+|[0-9a-f]{16}) *(- +-)? *$' |
        sed -E 's/ +- +- *$//' | head -n 40 >"$WORK/perf.children"
    if [ ! -s "$WORK/perf.self" ]; then
        PROFILE_TEXT="perf record over $PROFILE_S s of idleness: no samples (the agent did not run)"
        return
    fi
    PROFILE_TEXT="perf record -F 499 --call-graph dwarf over $PROFILE_S s of idleness ($(perf report -i "$data" --stdio 2>/dev/null | awk '/^# Samples:/ {print $3; exit}') samples)
  self time by dso:
$(sed 's/^/    /' "$WORK/perf.dso")
  self time (dso, symbol), >= 1%:
$(sed 's/^/    /' "$WORK/perf.self")
  user-space functions with their callees (children, self), >= 3%:
$(sed 's/^/    /' "$WORK/perf.children")"
    if [ "${IDLE_RSS_MAX:-0}" -ge $((16 * 1024)) ]; then
        PROFILE_TEXT+="
  largest mappings (/proc/PID/smaps, Rss in KiB):
$(awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anon]" } /^Rss:/ { rss[name] += $2 }
        END { for (n in rss) printf "%8d %s\n", rss[n], n }' "/proc/$pid/smaps" | sort -rn | head -n 16 | sed 's/^/    /')
  /proc/PID/smaps_rollup, KiB: $(rollup "$pid")"
        malloc_stats "$pid"
    fi
}

# rollup PID: the kinds of the agent's resident memory, in KiB
rollup() {
    awk '$1 ~ /^(Rss|Anonymous|Private_Clean|Private_Dirty|Shared_Clean):$/ { printf "%s %s  ", $1, $2 }' \
        "/proc/$1/smaps_rollup"
}

# malloc_stats PID: glibc's own account of the heap (bytes the arenas took
# from the system, bytes in use by live allocations), by gdb calling
# malloc_stats() in the agent, which prints to its stderr (the agent's log);
# the agent stops for the moment gdb is attached
malloc_stats() {
    local pid=$1 log=$WORK/big/agent.log lines
    command -v gdb >/dev/null || { note "gdb is not installed: no malloc_stats"; return; }
    lines=$(wc -l <"$log")
    timeout 60 gdb -p "$pid" -batch -nx -ex 'call (void) malloc_stats()' >"$WORK/gdb.log" 2>&1
    sleep 0.5
    PROFILE_TEXT+="
  glibc malloc_stats() (gdb), MiB: $(tail -n +$((lines + 1)) "$log" | awk '
        /^Total \(incl. mmap\):/ { total = 1; next }
        total && /system bytes/ { printf "taken from the system %.1f, ", $NF / 1048576 }
        total && /in use bytes/ { printf "in use by live allocations %.1f", $NF / 1048576 }
        /max mmap regions/ { total = 0 }')"
}

# ---- part 2: save -> first router change ----

# save_latency LABEL SRC STATE PORT CHANGES LOG: svc (2 replicas) created,
# then a canary paused at 1%, then CHANGES saves raising canary_percent by one
save_latency() {
    local label=$1 src=$2 state=$3 port=$4 changes=$5 agent_log=$6 tag=$7
    log "part 2 ($label): svc v1, 2 replicas, on port $port"
    save_spec "$src" svc v1 "$port" 2 instant
    wait_svc "$state" 120 '.phase == "running" and .primary.version_name == "v1" and (.primary.replicas | map(.ready) | add) == 2' ||
        die "svc v1 did not come up ($label)"
    save_spec "$src" svc v2 "$port" 2 instant 1
    wait_svc "$state" 120 '.phase == "canary_paused" and .traffic.canary == 1' ||
        die "svc v2 did not pause at 1% ($label)"
    service_yaml svc v2 "$port" 2 instant @PERCENT@ >"$WORK/$tag.template"
    local since
    since=$(date +%s.%N)
    log "part 2 ($label): $changes saves, canary_percent 2..$((changes + 1))"
    perl "$ROUTER_PL" saves --socket "$state/haproxy/admin.sock" --backend svc.app \
        --template "$WORK/$tag.template" --target "$src/svc.yaml" --aside "$WORK/svc.yaml.bench" \
        --from 2 --to $((changes + 1)) --out "$WORK/$tag.saves" --changes "$WORK/$tag.changes" \
        --interval-ms "$INTERVAL_MS" --gap-ms 300 --timeout-s 10 \
        --state "$state/state.json" --decisions "$WORK/$tag.history" >"$WORK/$tag.saves.log" 2>&1 &
    local helper=$!
    HELPER_PIDS+=("$helper")
    wait "$helper" || die "the save driver failed: $(tail -n 3 "$WORK/$tag.saves.log")"
    perl "$ROUTER_PL" match --decisions "$WORK/$tag.history" --log "$agent_log" \
        --changes "$WORK/$tag.changes" --since "$since" >"$WORK/$tag.decisions"
    # save -> router (matching change); save -> decision; decision -> router
    local s2r s2d d2r missed
    s2r=$(awk '$5 != "-" { printf "%.3f\n", ($5 - $3) * 1000 }' "$WORK/$tag.saves" | stats)
    missed=$(awk '$5 == "-"' "$WORK/$tag.saves" | wc -l)
    s2d=$(awk 'NR == FNR { if ($1 == "decision") d[$2] = $3; next }
               ($2 in d) { printf "%.3f\n", (d[$2] - $3) * 1000 }' "$WORK/$tag.decisions" "$WORK/$tag.saves" | stats)
    d2r=$(awk '$5 != "-" { printf "%.3f\n", ($5 - $3) * 1000 }' "$WORK/$tag.decisions" | stats)
    local samples gap_mean gap_max
    read -r _ samples _ gap_mean gap_max < <(grep '^samples ' "$WORK/$tag.changes")
    row 2 "save -> router change, $label, $changes saves" "$(describe "$s2r")" "$([ "$missed" -gt 0 ] && echo "$missed missed")"
    row "" "  save -> decision (inotify, debounce ${DEBOUNCE_MS} ms, reload)" "$(describe "$s2d")" ""
    row "" "  decision -> HAProxy has the new weights" "$(describe "$d2r")" ""
    row "" "  HAProxy sampling: one poll every" "$gap_mean ms mean, $gap_max ms max ($samples polls)" ""
    log_row "$WORK/$tag.decisions"
    log "part 2 ($label): save -> router $(describe "$s2r")"
}

# log_row DECISIONS: how many of the decisions (from state.json's history,
# time_ms) have their traffic_shifted line in the agent's log
log_row() {
    local total logged
    total=$(grep -c '^decision ' "$1")
    logged=$(awk '$6 == 1' "$1" | wc -l)
    row "" "  decisions that have their log line" "$logged of $total" \
        "$([ "$logged" -lt "$total" ] && echo "see the notes")"
    if [ "$logged" -lt "$total" ]; then
        LOG_GAPS=1
    fi
}

# ---- part 3: decision -> HAProxy over full rollouts ----

decision_latency() {
    local state=$1 src=$2 port=$3 agent_log=$4 k version since
    log "part 3: promoting v2, then $ROLLOUTS rollouts of ten 1 s steps"
    save_spec "$src" svc v2 "$port" 2 instant
    wait_svc "$state" 120 '.phase == "running" and .primary.version_name == "v2"' || die "v2 was not promoted"
    since=$(date +%s.%N)
    rm -f "$WORK/watch.stop"
    perl "$ROUTER_PL" watch --socket "$state/haproxy/admin.sock" --backend svc.app \
        --out "$WORK/rollouts.changes" --stop-file "$WORK/watch.stop" --interval-ms "$INTERVAL_MS" \
        >"$WORK/watch.log" 2>&1 &
    local watcher=$!
    HELPER_PIDS+=("$watcher")
    sleep 0.5
    for ((k = 1; k <= ROLLOUTS; k++)); do
        version=v$((k + 2))
        save_spec "$src" svc "$version" "$port" 2 production
        wait_svc "$state" 120 ".phase == \"running\" and .primary.version_name == \"$version\"" ||
            die "rollout to $version did not complete"
        # the history keeps 20 events, a rollout makes 12
        perl "$ROUTER_PL" history --state "$state/state.json" --decisions "$WORK/rollouts.history"
        log "part 3: rollout $k of $ROLLOUTS ($version) done"
    done
    touch "$WORK/watch.stop"
    wait "$watcher"
    perl "$ROUTER_PL" match --decisions "$WORK/rollouts.history" --log "$agent_log" \
        --changes "$WORK/rollouts.changes" --since "$since" >"$WORK/rollouts.decisions"
    local d2r first missed samples gap_mean gap_max
    d2r=$(awk '$5 != "-" { printf "%.3f\n", ($5 - $3) * 1000 }' "$WORK/rollouts.decisions" | stats)
    first=$(awk '$4 != "-" { printf "%.3f\n", ($4 - $3) * 1000 }' "$WORK/rollouts.decisions" | stats)
    missed=$(awk '$5 == "-"' "$WORK/rollouts.decisions" | wc -l)
    read -r _ samples _ gap_mean gap_max < <(grep '^samples ' "$WORK/rollouts.changes")
    row 3 "step decision -> HAProxy, $ROLLOUTS rollouts x 10 steps" "$(describe "$d2r")" "$([ "$missed" -gt 0 ] && echo "$missed unmatched")"
    row "" "  decision -> first change of any server" "$(describe "$first")" ""
    row "" "  HAProxy sampling: one poll every" "$gap_mean ms mean, $gap_max ms max ($samples polls)" ""
    log_row "$WORK/rollouts.decisions"
    log "part 3: decision -> HAProxy $(describe "$d2r")"
}

# ---- main ----

main() {
    local t missing=()
    for t in haproxy perl jq timeout awk; do command -v "$t" >/dev/null || missing+=("$t"); done
    [ -x "$ROLLD" ] || missing+=("$ROLLD")
    [ -x "$MODEL_SERVER" ] || missing+=("$MODEL_SERVER")
    if [ ${#missing[@]} -gt 0 ]; then
        echo "agent_bench.sh: missing ${missing[*]} (build with cmake --build BUILD --target rolld model-server)" >&2
        exit 77
    fi
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/rolld-agentbench.XXXX") || exit 1
    WORK=$(cd "$WORK" && pwd -P)
    trap cleanup EXIT
    trap 'log "signal: stopping (deadline ${AB_DEADLINE:-1200} s?)"; exit 124' TERM INT HUP
    POL=$WORK/policies
    mkdir -p "$POL" "$WORK/big" "$WORK/small/services"
    write_policies
    DEBOUNCE_MS=30

    machine_checks
    local span=$((2 * SERVICES + 260))
    pick_ports "$span" || die "no $span free ports between 20000 and $EPHEMERAL_LOW"
    BIG_SVC_PORT=$((BASE + SERVICES))
    BIG_PORT_LOW=$((BASE + SERVICES + 10))
    BIG_PORT_HIGH=$((BASE + 2 * SERVICES + 109))
    METRICS_PORT=$((BASE + 2 * SERVICES + 120))
    SMALL_SVC_PORT=$((BASE + 2 * SERVICES + 150))
    SMALL_PORT_LOW=$((BASE + 2 * SERVICES + 160))
    SMALL_PORT_HIGH=$((BASE + 2 * SERVICES + 259))
    LOAD_START=$(uptime)
    local build_type
    build_type=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$(dirname "$ROLLD")/CMakeCache.txt" 2>/dev/null)
    log "work dir $WORK; $LIMITS; ports $BASE-$((BASE + span - 1))"

    part_idle
    if [ "$LOADED_CHANGES" -gt 0 ]; then
        save_latency "$RUNNING others loaded" "$BIG_SRC" "$BIG_STATE" "$BIG_SVC_PORT" \
            "$LOADED_CHANGES" "$WORK/big/agent.log" loaded
    fi
    log "stopping the agent of part 1, its HAProxy and its replicas"
    t=$(now_ms)
    stop_agent "$BIG_AGENT"
    stop_state "$BIG_STATE"
    log "stopped in $(($(now_ms) - t)) ms"

    start_agent "$WORK/small/services" "$WORK/small/state" "$SMALL_PORT_LOW" "$SMALL_PORT_HIGH" "$WORK/small/agent.log"
    SMALL_AGENT=$AGENT_PID
    save_latency "1 service" "$WORK/small/services" "$WORK/small/state" "$SMALL_SVC_PORT" "$CHANGES" \
        "$WORK/small/agent.log" small
    SMALL_RSS=$(rss_kib "$SMALL_AGENT")
    decision_latency "$WORK/small/state" "$WORK/small/services" "$SMALL_SVC_PORT" "$WORK/small/agent.log"
    row "" "  (context) agent RSS with 1 service" "$(mib "$SMALL_RSS") MiB" ""

    LOAD_END=$(uptime)
    {
        echo
        echo "==== rolld agent benchmark ($(date -u +%Y-%m-%dT%H:%MZ)) ===="
        echo "binary: $ROLLD (${build_type:-unknown build type}); $(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3)"
        echo "machine: $LIMITS"
        echo "uptime at start: $LOAD_START"
        echo "uptime at end:   $LOAD_END"
        echo "replicas: $MODEL_SERVER, health_check_period_s 10 (the default); debounce ${DEBOUNCE_MS} ms (the default)"
        printf '| %-2s | %-52s | %-58s | %-16s |\n' "#" "measure" "figure" "aim"
        printf '|----|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..60})" "$(printf -- '-%.0s' {1..18})"
        printf '%s\n' "${ROWS[@]}"
        echo "Part 2's sequence: svc (2 replicas) runs v1; v2 (new image) starts as a canary with"
        echo "rollout.canary_percent 1 under a policy with step_duration 0s and pauses at 1%; each save"
        echo "(write aside, rename into the source dir) raises canary_percent by one, the same version with"
        echo "new rollout settings, which moves the paused canary's traffic at once with no replica start"
        echo "(lowering it would not move traffic back, so the sequence only rises). Router change: the"
        echo "first poll of \`show servers state svc.app\` in which the canary side's weights give that share."
        echo "Part 3: from each 'traffic_shifted' decision (time_ms of the service's history in state.json:"
        echo "the agent's clock at the decision, before it saves its state and tells HAProxy; its log line,"
        echo "when there is one, carries the same ms) to the first poll showing that split."
        if [ -n "${LOG_GAPS:-}" ]; then
            echo "note: the agent did not log every traffic step: reconcile_service (reconciler/agent.c) logs"
            echo "  an event only when the phase or the history's length changes, and the history is capped"
            echo "  at ROLLOUT_HISTORY_MAX (20) events, so once a service has 20 events a step that keeps the"
            echo "  phase (traffic_shifted in canary_progressing) leaves no log line."
        fi
        echo "p50/p99 are nearest-rank: p99 of fewer than 100 samples is the largest."
        for t in "${NOTES[@]}"; do echo "note: $t"; done
        [ -n "${PROFILE_TEXT:-}" ] && echo "$PROFILE_TEXT"
        echo "==== end ===="
    } | tee ${REPORT:+"$REPORT"}
}

main
