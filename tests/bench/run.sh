#!/usr/bin/env bash
# The benchmark suite, one command: builds rolld, the model server and the
# bench helpers with release flags, then runs
#   1. bench_plan: `rolld plan` over 10,000 generated services (wall time, peak RSS)
#   2. agent_bench.sh: the agent idle with 1,000 services (RSS, CPU), save ->
#      router change (p50/p99 over 60 saves), traffic step decision -> HAProxy
#   3. git_bench.sh: git push -> router change with inotify and with polling
#      (p50/p99 over 100 pushes each), fetch + plan over 1,000 services
# and prints each part's own table, then one summary table of the headline
# figures against the aims of the 2-core reference machine. Benchmarks, not
# timed tests: they print figures and judge nothing but "met"/"missed".
# Takes about 15 minutes; run it on an otherwise idle machine.
#   tests/bench/run.sh [--only plan|agent|git]
set -uo pipefail
cd "$(dirname "$0")/../.."
only=${2:-}
[ "${1:-}" = --only ] || only=
tests/install-deps.sh test
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DROLLD_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target rolld model-server bench_plan git_bench_fetch >/dev/null
out=$(mktemp -d "${TMPDIR:-/tmp}/rolld-bench.XXXX")
trap 'rm -rf "$out"' EXIT
export ROLLD=$PWD/$build/rolld MODEL_SERVER=$PWD/$build/examples/model-server/model-server

if [ -z "$only" ] || [ "$only" = plan ]; then
    echo "== 1. rolld plan over 10,000 services"
    "$build/tests/bench/bench_plan" "$build/rolld" --in-process | tee "$out/plan.txt"
fi
if [ -z "$only" ] || [ "$only" = agent ]; then
    echo "== 2. the agent: idle with 1,000 services, save -> router"
    bash tests/bench/agent_bench.sh --build "$build" --profile never --report "$out/agent.txt" \
        >"$out/agent.log" 2>&1
    cat "$out/agent.txt" 2>/dev/null || tail -n 30 "$out/agent.log"
fi
if [ -z "$only" ] || [ "$only" = git ]; then
    echo "== 3. Git: push -> router, fetch + plan over 1,000 services"
    GIT_BENCH_BUILD=$build GIT_BENCH_SKIP_BUILD=1 bash tests/bench/git_bench.sh 2>&1 |
        tee "$out/git.txt" | sed -n '/^====/,$p'
fi

# ---- the summary: one line per aim, taken from the parts' tables ----
cell() { # FILE REGEX: the first line of FILE matching REGEX, squeezed
    grep -m1 -E "$2" "$1" 2>/dev/null | tr -s ' ' | cut -c1-150
}
echo
echo "==== rolld benchmarks: summary ($(date -u +%Y-%m-%dT%H:%MZ); $(uptime | sed 's/.*load/load/')) ===="
printf '%-44s | %s\n' "aim" "measured (the row of the part's table)"
printf '%-44s | %s\n' "plan of 10,000 services < 1 s, < 64 MiB" "$(cell "$out/plan.txt" '^[0-9]+ +[0-9]+ ')"
printf '%-44s | %s\n' "agent idle RSS < 16 MiB (1,000 services)" "$(cell "$out/agent.txt" 'RSS, idle')"
printf '%-44s | %s\n' "agent idle CPU < 0.5% (1,000 services)" "$(cell "$out/agent.txt" 'CPU, idle')"
printf '%-44s | %s\n' "save -> router p99 < 100 ms (directory)" "$(cell "$out/agent.txt" 'save -> router change, 1 service')"
printf '%-44s | %s\n' "traffic step: decision -> HAProxy" "$(cell "$out/agent.txt" 'step decision -> HAProxy')"
printf '%-44s | %s\n' "git push -> router p99 < 250 ms (inotify)" "$(cell "$out/git.txt" '^ +inotify')"
printf '%-44s | %s\n' "git push -> router, polling" "$(cell "$out/git.txt" '^ +(poll|--no-watch)')"
printf '%-44s | %s\n' "fetch + plan, 1,000 services" "$(cell "$out/git.txt" 'plan --repo')"
echo "==== end ===="
