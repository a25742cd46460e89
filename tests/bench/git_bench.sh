#!/usr/bin/env bash
# git_bench: what following a Git repository costs rolld. A benchmark, not a
# timed test: it prints figures (one table at the end) and fails only when
# something does not work at all.
#
# 1. Time from `git push` into a local bare origin to the first rollout
#    action, the first change of HAProxy's traffic configuration (read through
#    its runtime API, STATE/haproxy/admin.sock, `show servers state`, every
#    GIT_BENCH_INTERVAL_MS by git_bench_push.pl), p50/p90/p99 over
#    GIT_BENCH_CHANGES pushes for each way of noticing a push:
#      inotify   the default: `rolld run --git file://ORIGIN` watches the
#                origin's refs (and fetches every 60 s as a fallback)
#      poll      `--no-watch --fetch-interval GIT_BENCH_POLL_S` (1 s)
#    One service ("svc", the example model server as replicas, a
#    development-like policy of its own: steps 50, 100 of 1 s, heavyweight
#    changes in place; the status branch on, as by default) whose
#    spec alternates between num_replicas 3 and 2: an in-place lightweight
#    change, no canary. Scaling down, the first router change is the drain of
#    one replica: noticing the push + fetch + load + plan + router update.
#    Scaling up, the new replica enters the router once it has started and
#    passed its first health check: that figure includes both. Each push
#    waits until the previous change has settled (the router's servers as
#    expected and unchanged for GIT_BENCH_SETTLE_MS, 300).
# 2. A repository of GIT_BENCH_SERVICES (1,000) generated specs (each its
#    own name and port; `rolld validate` must say all are valid) and a second
#    commit changing 10% of them (half image bumps: canary; half replica
#    counts: in place):
#      a) `rolld plan --repo R --base B --head H --dir services --format json`:
#         wall time and max RSS (/usr/bin/time), median of GIT_BENCH_RUNS (5);
#         the plan's summary is checked (100 changed, the rest none);
#      b) the agent's first fetch + load of the repository, measured by
#         git_bench_fetch (git_source_open + git_source_fetch +
#         git_source_load, the calls `rolld run --git` makes, without
#         starting 1,000 services' replicas) into a fresh clone, from a
#         packed bare origin: wall time per phase and peak RSS (VmHWM),
#         median of GIT_BENCH_RUNS; then the fetch + load of the push B -> H
#         on that clone, and a fetch when nothing changed (what every
#         --fetch-interval costs).
#
# Run from anywhere (about 4-5 minutes; run it on an idle machine, the figures
# are wall-clock times and the table shows the load average):
#   bash tests/bench/git_bench.sh
# Environment:
#   GIT_BENCH_BUILD        build dir (default build/bench, Release, as tests/bench/run.sh)
#   GIT_BENCH_SKIP_BUILD=1 use the binaries already in GIT_BENCH_BUILD
#   GIT_BENCH_CHANGES      pushes per mode, alternately down and up (default 100: 50 each)
#   GIT_BENCH_POLL_S       --fetch-interval of the polling mode (default 1)
#   GIT_BENCH_INTERVAL_MS  sleep between two router reads (default 2)
#   GIT_BENCH_SERVICES     services of the large repository (default 1000)
#   GIT_BENCH_RUNS         runs of part 2 (default 5)
#   GIT_BENCH_PARTS        "push repo" (default), or one of them
#   GIT_BENCH_MODES        "inotify poll" (default), or one of them
#   GIT_BENCH_AGENT_ARGS   more `rolld run` options for part 1, e.g. --no-status-git
#   GIT_BENCH_SETTLE_MS    quiet time of the router before each push (default 300)
#   IT_DEADLINE            seconds the whole run may take (default 1200)
#   IT_KEEP=1              keep the temp dir (${TMPDIR:-/tmp}/rolld-it.XXXX)
# Every process it starts (agents, HAProxy master and workers, replicas) is
# stopped by pid at the end, as tests/integration/lib.sh does for the tests.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_TOP=$(cd "$BENCH_DIR/../.." && pwd)
BUILD=${GIT_BENCH_BUILD:-build/bench}
case $BUILD in /*) ;; *) BUILD=$BENCH_TOP/$BUILD ;; esac

# ---- build (once, before lib.sh re-runs this script under timeout) ----
if [ -z "${IT_UNDER_TIMEOUT:-}" ] && [ -z "${GIT_BENCH_SKIP_BUILD:-}" ]; then
    set -e
    "$BENCH_TOP/tests/install-deps.sh" test
    if [ ! -x /usr/bin/time ]; then # Debian's package time; not in install-deps.sh yet
        echo "installing: time"
        SUDO=
        [ "$(id -u)" -ne 0 ] && SUDO=sudo
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends time \
            >/dev/null 2>&1 || true
    fi
    cmake -S "$BENCH_TOP" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DROLLD_WERROR=ON >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target rolld model-server rolld_git >/dev/null
    # built by CMake once tests/bench/CMakeLists.txt has the target; by hand otherwise
    cmake --build "$BUILD" --target git_bench_fetch >/dev/null 2>&1 || true
    set +e
fi

export ROLLD=${ROLLD:-$BUILD/rolld}
export MODEL_SERVER=${MODEL_SERVER:-$BUILD/examples/model-server/model-server}
export IT_DEADLINE=${IT_DEADLINE:-1200}
source "$BENCH_TOP/tests/integration/lib.sh"

CHANGES=${GIT_BENCH_CHANGES:-100}
POLL_S=${GIT_BENCH_POLL_S:-1}
INTERVAL_MS=${GIT_BENCH_INTERVAL_MS:-2}
SERVICES=${GIT_BENCH_SERVICES:-1000}
RUNS=${GIT_BENCH_RUNS:-5}
PARTS=${GIT_BENCH_PARTS:-push repo}
MODES=${GIT_BENCH_MODES:-inotify poll}
SETTLE_MS=${GIT_BENCH_SETTLE_MS:-300}
read -r -a EXTRA_AGENT_ARGS <<<"${GIT_BENCH_AGENT_ARGS:-}"
command -v git >/dev/null || { echo "SKIP: git missing"; exit 77; }
[ -x /usr/bin/time ] || { echo "SKIP: /usr/bin/time missing (Debian package time)"; exit 77; }

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=Bench GIT_AUTHOR_EMAIL=bench@example.com
export GIT_COMMITTER_NAME=Bench GIT_COMMITTER_EMAIL=bench@example.com
GIT=(git -c init.defaultBranch=main)

it_setup
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
UPTIME_BEFORE=$(uptime)
COMMIT=$(git -C "$BENCH_TOP" rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$BENCH_TOP" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
declare -A RESULT=()

# ---- stopping one mode's processes (it_cleanup does the same at exit) ----

stop_world() {
    local pids=() pid ours=()
    for pid in "${AGENT_PIDS[@]}"; do
        [ -d "/proc/$pid" ] && pids+=("$pid")
    done
    stop_pids "${pids[@]}"
    pids=()
    [ -f "$STATE/haproxy/haproxy.pid" ] && pids+=($(cat "$STATE/haproxy/haproxy.pid"))
    if [ -S "$STATE/haproxy/master.sock" ]; then
        pids+=($(runtime_command "$STATE/haproxy/master.sock" "show proc" | awk '/^[0-9]+ / {print $1}'))
    fi
    pids+=($(haproxy_pids))
    for pid in $(printf '%s\n' "${pids[@]}" | sort -un); do
        grep -qzxF "$STATE/haproxy/haproxy.cfg" "/proc/$pid/cmdline" 2>/dev/null && ours+=("$pid")
    done
    stop_pids "${ours[@]}"
    stop_pids $(replica_pids)
    local left
    left=$( (replica_pids; haproxy_pids) | tr '\n' ' ')
    [ -z "${left// /}" ] || fail "processes of $STATE still running: $left"
}

# ---- part 1: git push -> first router change ----

# push_mode MODE AGENT_ARGS...: a fresh origin, clone and state dir; the agent
# with AGENT_ARGS; CHANGES pushes timed by git_bench_push.pl
push_mode() {
    local mode=$1
    shift
    STATE=$WORK/state-$mode
    local origin=$WORK/origin-$mode.git clone=$WORK/clone-$mode
    "${GIT[@]}" init -q --bare "$origin"
    "${GIT[@]}" init -q "$clone"
    "${GIT[@]}" -C "$clone" remote add origin "$origin"
    SRC=$clone/services
    mkdir -p "$SRC"
    write_spec v1 --policy development --replicas 2 --reconfigure
    cp "$SRC/svc.yaml" "$WORK/svc-2.yaml"
    write_spec v1 --policy development --replicas 3 --reconfigure
    cp "$SRC/svc.yaml" "$WORK/svc-3.yaml"
    "${GIT[@]}" -C "$clone" add -A
    "${GIT[@]}" -C "$clone" commit -q -m "svc: 3 replicas"
    "${GIT[@]}" -C "$clone" push -q origin HEAD:main || fatal "$mode: cannot push to $origin"

    "$ROLLD" run --git "file://$origin" --branch main --dir services --name bench-agent \
        --state-dir "$STATE" --policies "$POL" --port-range "$PORT_LOW-$PORT_HIGH" "$@" \
        ${EXTRA_AGENT_ARGS+"${EXTRA_AGENT_ARGS[@]}"} >>"$WORK/agent-$mode.log" 2>&1 &
    AGENT_PID=$!
    AGENT_PIDS+=("$AGENT_PID")
    log "$mode: agent started (pid $AGENT_PID): rolld run --git file://$origin $* ${EXTRA_AGENT_ARGS[*]}"
    wait_status 60 '.phase == "running" and (.primary.replicas | map(.ready) | add) == 3' ||
        fatal "$mode: svc did not come up with 3 ready replicas"
    pass "$mode: svc running with 3 ready replicas after $WAITED_MS ms"

    log "$mode: $CHANGES pushes (3 -> 2 -> 3 ... replicas), router read every $INTERVAL_MS ms"
    if perl "$BENCH_DIR/git_bench_push.pl" --socket "$STATE/haproxy/admin.sock" --backend svc.app \
        --clone "$clone" --file services/svc.yaml --down "$WORK/svc-2.yaml" --up "$WORK/svc-3.yaml" \
        --replicas-down 2 --replicas-up 3 --changes "$CHANGES" --label "$mode" \
        --interval-ms "$INTERVAL_MS" --settle-ms "$SETTLE_MS" --samples "$WORK/push-$mode.samples" \
        >"$WORK/push-$mode.log" 2>&1; then
        pass "$mode: $CHANGES pushes timed (samples in push-$mode.samples)"
    else
        fail "$mode: the push benchmark stopped: $(tail -n 1 "$WORK/push-$mode.log")"
        tail -n 5 "$WORK/push-$mode.log" | sed 's/^/    /'
    fi
    local line
    while read -r line; do
        set -- $line
        RESULT[$2.$3]=$line
    done < <(grep '^RESULT ' "$WORK/push-$mode.log")
    stop_world
}

# ---- part 2: a large repository ----

# service_yaml I VARIANT > FILE: service I (0-based); VARIANT base, image
# (image bump: a canary) or replicas (one more replica: in place, lightweight)
service_yaml() {
    local i=$1 variant=$2 name minor=0 replicas=$((1 + $1 % 4)) policy=production
    printf -v name 'svc-%04d' "$i"
    [ "$variant" = image ] && minor=1
    [ "$variant" = replicas ] && replicas=$((replicas + 1))
    [ $((i % 3)) = 0 ] && policy=development
    printf '%s\n' \
        "# generated by tests/bench/git_bench.sh: service $i" \
        "name: $name" \
        "version_name: \"1.$((i % 7)).$minor\"" \
        "image_uri: registry.example.com/team-$((i % 40))/$name:1.$((i % 7)).$minor" \
        "compute_config: cpu-small" \
        "env_vars:" \
        "  MODEL_FAMILY: family-$((i % 17))" \
        "http_options:" \
        "  host: 127.0.0.1" \
        "  port: $((30000 + i))" \
        "applications:" \
        "  - name: main" \
        "    route_prefix: /main" \
        "    import_path: svc_$i.app:deployment" \
        "    deployments:" \
        "      - name: Model" \
        "        num_replicas: $replicas" \
        "        max_ongoing_requests: 16" \
        "        user_config: {temperature: 0.7, max_tokens: 256}" \
        "        ray_actor_options: {num_cpus: 1}" \
        "        health_check_period_s: 2" \
        "        health_check_timeout_s: 5"
    if [ $((i % 4)) = 0 ]; then
        printf '%s\n' \
            "  - name: aux" \
            "    route_prefix: /aux" \
            "    import_path: svc_$i.aux:deployment" \
            "    runtime_env: {pip: [transformers==4.44.0]}" \
            "    deployments:" \
            "      - name: Aux" \
            "        num_replicas: 1" \
            "        ray_actor_options: {num_cpus: 0.5}"
    fi
    printf '%s\n' \
        "rollout:" \
        "  policy: $policy" \
        "backend:" \
        "  type: process" \
        "  process:" \
        "    applications:" \
        "      - name: main" \
        "        command: [model-server, --port, \"{port}\"]" \
        "        health_path: /healthz" \
        "        reconfigure_path: /reconfigure"
    if [ $((i % 4)) = 0 ]; then
        printf '%s\n' \
            "      - name: aux" \
            "        command: [model-server, --port, \"{port}\"]" \
            "        health_path: /healthz"
    fi
}

# the variant of service I at the head commit: 10% changed, half and half
head_variant() {
    case $(($1 % 20)) in
    3) echo image ;;
    13) echo replicas ;;
    *) echo base ;;
    esac
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s..%s", lo, hi }'; }
# kv FILE KEY: the value of KEY=... in a git_bench_fetch output line
kv() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

repo_part() {
    local big=$WORK/big i variant out
    mkdir -p "$big/services"
    "${GIT[@]}" init -q "$big"
    for ((i = 0; i < SERVICES; i++)); do
        printf -v out '%s/services/svc-%04d.yaml' "$big" "$i"
        service_yaml "$i" base >"$out"
    done
    out=$("$ROLLD" validate "$big/services" 2>&1 | tail -n 1)
    check_eq "rolld validate, base commit" "$SERVICES valid, 0 invalid" "$out"
    "${GIT[@]}" -C "$big" add -A
    "${GIT[@]}" -C "$big" commit -q -m "$SERVICES services"
    local base head changed=0 images=0
    base=$(git -C "$big" rev-parse HEAD)
    for ((i = 0; i < SERVICES; i++)); do
        variant=$(head_variant "$i")
        [ "$variant" = base ] && continue
        changed=$((changed + 1))
        [ "$variant" = image ] && images=$((images + 1))
        printf -v out '%s/services/svc-%04d.yaml' "$big" "$i"
        service_yaml "$i" "$variant" >"$out"
    done
    out=$("$ROLLD" validate "$big/services" 2>&1 | tail -n 1)
    check_eq "rolld validate, head commit" "$SERVICES valid, 0 invalid" "$out"
    "${GIT[@]}" -C "$big" commit -q -a -m "$changed services changed"
    head=$(git -C "$big" rev-parse HEAD)
    REPO_DESC="$SERVICES services, $(du -sk "$big/services" | cut -f1) KiB of YAML; $changed changed ($images image bumps, $((changed - images)) replica counts)"
    log "repository: $REPO_DESC; base ${base:0:12}, head ${head:0:12}"

    # a) rolld plan --repo
    local r start end
    : >"$WORK/plan.wall"
    : >"$WORK/plan.rss"
    for ((r = 1; r <= RUNS; r++)); do
        start=${EPOCHREALTIME//[.,]/}
        /usr/bin/time -f '%M' -o "$WORK/plan.time" "$ROLLD" plan --repo "$big" --base "$base" \
            --head "$head" --dir services --format json --policies "$BENCH_TOP/policies" \
            >"$WORK/plan.json" 2>"$WORK/plan.err"
        local rc=$?
        end=${EPOCHREALTIME//[.,]/}
        if [ $rc -ne 0 ]; then
            fail "rolld plan --repo exited $rc: $(head -n 3 "$WORK/plan.err")"
            return
        fi
        echo "$(((end - start) / 1000)).$(((end - start) % 1000 / 100))" >>"$WORK/plan.wall"
        tail -n 1 "$WORK/plan.time" >>"$WORK/plan.rss"
    done
    local summary
    summary=$(jq -c '.summary' "$WORK/plan.json")
    check_eq "the plan: $images canaries, $((changed - images)) in place, the rest unchanged" \
        "{\"canary\":$images,\"in_place_lightweight\":$((changed - images)),\"none\":$((SERVICES - changed))}" \
        "$(jq -c '.summary | to_entries | sort_by(.key) | from_entries' "$WORK/plan.json")"
    PLAN_WALL=$(median <"$WORK/plan.wall")
    PLAN_WALL_RANGE=$(minmax <"$WORK/plan.wall")
    PLAN_RSS=$(median <"$WORK/plan.rss")
    PLAN_RSS_RANGE=$(minmax <"$WORK/plan.rss")
    PLAN_BYTES=$(stat -c %s "$WORK/plan.json")
    log "plan: $summary; wall $(tr '\n' ' ' <"$WORK/plan.wall")ms; max RSS $(tr '\n' ' ' <"$WORK/plan.rss")KiB"

    # b) the agent's fetch + load, from a packed bare origin
    local fetcher=$BUILD/tests/bench/git_bench_fetch
    if [ ! -x "$fetcher" ]; then
        fetcher=$WORK/git_bench_fetch
        # shellcheck disable=SC2046
        cc -O2 -g -D_GNU_SOURCE -I"$BENCH_TOP/reconciler" -o "$fetcher" "$BENCH_DIR/git_bench_fetch.c" \
            "$BUILD/librolld_git.a" "$BUILD/librolld_core.a" \
            $(pkg-config --cflags --libs libgit2 jansson yaml-0.1) -lm 2>"$WORK/fetch-cc.log" ||
            { fail "cannot compile git_bench_fetch.c: $(head -n 3 "$WORK/fetch-cc.log")"; return; }
        log "git_bench_fetch compiled by hand (no CMake target in $BUILD)"
    fi
    local origin=$WORK/big-origin.git
    git clone -q --bare --no-local "$big" "$origin"
    : >"$WORK/fetch-first.txt"
    : >"$WORK/fetch-push.txt"
    for ((r = 1; r <= RUNS; r++)); do
        rm -rf "$WORK/agent-clone.git"
        git -C "$origin" update-ref refs/heads/main "$base"
        "$fetcher" --url "file://$origin" --clone "$WORK/agent-clone.git" --dir services \
            >>"$WORK/fetch-first.txt" 2>"$WORK/fetch.err" ||
            { fail "git_bench_fetch (first fetch): $(head -n 3 "$WORK/fetch.err")"; return; }
        git -C "$origin" update-ref refs/heads/main "$head"
        "$fetcher" --url "file://$origin" --clone "$WORK/agent-clone.git" --dir services --again \
            >>"$WORK/fetch-push.txt" 2>"$WORK/fetch.err" ||
            { fail "git_bench_fetch (push): $(head -n 3 "$WORK/fetch.err")"; return; }
    done
    check_eq "the first fetch loaded every spec, valid" "$SERVICES $SERVICES" \
        "$(tail -n 1 "$WORK/fetch-first.txt" | tr ' ' '\n' | awk -F= '$1 == "entries" { e = $2 } $1 == "valid" { v = $2 } END { print e, v }')"
    check_eq "the fetch of the push got the head commit" "$head" \
        "$(tail -n 1 "$WORK/fetch-push.txt" | tr ' ' '\n' | awk -F= '$1 == "commit" { print $2 }')"
    local f k
    for f in first push; do
        for k in total_ms fetch_ms load_ms hwm_kib maxrss_kib noop_fetch_ms open_ms; do
            FETCH[$f.$k]=$(tr ' ' '\n' <"$WORK/fetch-$f.txt" | awk -F= -v k="$k" '$1 == k { print $2 }' | median)
            FETCH[$f.$k.range]=$(tr ' ' '\n' <"$WORK/fetch-$f.txt" | awk -F= -v k="$k" '$1 == k { print $2 }' | minmax)
        done
    done
    ORIGIN_KIB=$(du -sk "$origin" | cut -f1)
}
declare -A FETCH=()

# ---- the runs ----

write_policy "[50, 100]" 1s 30s --name production
write_policy "[50, 100]" 1s 30s --name development --heavyweight in_place --wave 50
case " $PARTS " in *" push "*)
    case " $MODES " in *" inotify "*) push_mode inotify --fetch-interval 60 ;; esac
    case " $MODES " in *" poll "*) push_mode poll --no-watch --fetch-interval "$POLL_S" ;; esac
    ;;
esac
case " $PARTS " in *" repo "*) repo_part ;; esac

# ---- the table ----

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") print "-"; else printf "%.1f", k / 1024 }'; }
row() { # LABEL KEY
    local label=$1 line=${RESULT[$2]:-}
    if [ -z "$line" ]; then
        printf '  %-36s %s\n' "$label" "no figures"
        return
    fi
    set -- $line
    # RESULT label dir n p50 p90 p99 min max mean timeouts gap_mean gap_max push_mean after_p50 after_p99
    printf '  %-36s %3s %7s %7s %7s %7s %7s %4s %6s/%-6s %5s %7s %7s\n' "$label" "$4" "$5" "$6" "$7" "$8" \
        "$9" "${11}" "${12}" "${13}" "${14}" "${15}" "${16}"
}
{
    echo
    echo "==== git_bench: rolld ${COMMIT:0:12}$([ "$DIRTY" -gt 0 ] && echo " (+$DIRTY files modified in the work tree)") ===="
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); $(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3); libgit2 $(pkg-config --modversion libgit2 2>/dev/null)"
    echo "load average (1, 5, 15 min): $LOAD_BEFORE at the start, $LOAD_AFTER at the end"
    echo "uptime at the start: $UPTIME_BEFORE"
    echo "binaries: $ROLLD, $MODEL_SERVER"
    case " $PARTS " in *" push "*)
        echo
        echo "1. git push -> first router change (ms; HAProxy show servers state read every ~${INTERVAL_MS} ms + the read itself;"
        echo "   agent options: --git file://ORIGIN --dir services ${EXTRA_AGENT_ARGS[*]:-(status branch on)}; router quiet ${SETTLE_MS} ms before each push;"
        echo "   'resolution' = time between the read that saw the change and the one before, mean/max)"
        printf '  %-36s %3s %7s %7s %7s %7s %7s %4s %13s %5s %15s\n' "" n p50 p90 p99 min max lost resolution push "after push p50/p99"
        for mode in $MODES; do
            for dir in down up; do
                if [ $mode = inotify ]; then LABEL="inotify on the origin's refs"; else LABEL="--no-watch --fetch-interval $POLL_S"; fi
                if [ $dir = down ]; then LABEL+=", 3->2"; else LABEL+=", 2->3"; fi
                row "$LABEL" "$mode.$dir"
            done
        done
        echo "  3->2: the drain of one replica (notice, fetch, load, plan, router update);"
        echo "  2->3: the new replica in the router (that, plus the replica's start and first health check)."
        echo "  p99 by nearest rank: over 50 samples it is the maximum. 'push': git push's own time (mean), included"
        echo "  in the figures; 'after push': from the moment git push exited (the ref moved a little before)."
        ;;
    esac
    case " $PARTS " in *" repo "*)
        echo
        echo "2. $REPO_DESC (median of $RUNS runs, min..max)"
        printf '  %-58s %10s %-16s %9s %s\n' "" "wall ms" "" "peak MiB" ""
        printf '  %-58s %10s %-16s %9s %s\n' "a) rolld plan --repo --base --head --format json" "${PLAN_WALL:-}" "(${PLAN_WALL_RANGE:-})" \
            "$(mib "${PLAN_RSS:-}")" "(max RSS, /usr/bin/time; JSON $((${PLAN_BYTES:-0} / 1024)) KiB)"
        printf '  %-58s %10s %-16s %9s %s\n' "b) agent's first fetch + load (open+fetch+load)" "${FETCH[first.total_ms]:-}" \
            "(${FETCH[first.total_ms.range]:-})" "$(mib "${FETCH[first.hwm_kib]:-}")" "(VmHWM of git_bench_fetch)"
        printf '  %-58s %10s\n' "     open (create the bare clone)" "${FETCH[first.open_ms]:-}"
        printf '  %-58s %10s %-16s\n' "     fetch (origin packed: ${ORIGIN_KIB:-?} KiB on disk)" "${FETCH[first.fetch_ms]:-}" "(${FETCH[first.fetch_ms.range]:-})"
        printf '  %-58s %10s %-16s\n' "     load ($SERVICES specs read from the tree and parsed)" "${FETCH[first.load_ms]:-}" "(${FETCH[first.load_ms.range]:-})"
        printf '  %-58s %10s %-16s %9s\n' "   then the push B -> H: fetch + load (same clone)" "${FETCH[push.total_ms]:-}" \
            "(${FETCH[push.total_ms.range]:-})" "$(mib "${FETCH[push.hwm_kib]:-}")"
        printf '  %-58s %10s %-16s\n' "     fetch" "${FETCH[push.fetch_ms]:-}" "(${FETCH[push.fetch_ms.range]:-})"
        printf '  %-58s %10s %-16s\n' "     load (the changed blobs parsed, the rest taken over)" "${FETCH[push.load_ms]:-}" "(${FETCH[push.load_ms.range]:-})"
        printf '  %-58s %10s %-16s\n' "   a fetch when nothing changed (each --fetch-interval)" "${FETCH[push.noop_fetch_ms]:-}" \
            "(${FETCH[push.noop_fetch_ms.range]:-})"
        ;;
    esac
    echo "==== end of git_bench ===="
} | tee "$WORK/table.txt"
finish
