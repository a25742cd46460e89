#!/usr/bin/env bash
# The full benchmark of `rolld plan`: builds rolld and bench_plan with the
# release flags, then plans 10,000 generated services (v2 against v1) five
# times and prints wall time and peak memory against the targets (under 1 s
# and 64 MiB on the 2-core reference machine), then the same work timed in
# process, phase by phase. Arguments go to bench_plan, for instance
#   tests/bench/run.sh --services 20000 --runs 9
# Run it on an idle machine: the figures are wall-clock times.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/install-deps.sh test
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DROLLD_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target rolld bench_plan >/dev/null
exec "$build/tests/bench/bench_plan" "$build/rolld" --in-process "$@"
