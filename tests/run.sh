#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as
# errors, runs every test, then runs the unit tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer, then fuzzes the spec
# parser for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh test
jobs=$(nproc)

echo "== build (warnings as errors)"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROLLD_WERROR=ON >/dev/null
cmake --build build/test -j"$jobs"
echo "== tests"
ctest --test-dir build/test --output-on-failure -j"$jobs"

echo "== unit tests under ASan + UBSan"
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DROLLD_WERROR=ON -DROLLD_SANITIZE=ON \
    -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build/sanitize -j"$jobs"
ctest --test-dir build/sanitize --output-on-failure -j"$jobs" -L unit

echo "== fuzz the spec parser (bounded)"
cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DROLLD_FUZZ=ON -DROLLD_TESTS=OFF \
    -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build/fuzz -j"$jobs" --target fuzz_spec
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
build/fuzz/tests/fuzz/fuzz_spec -max_total_time="${ROLLD_FUZZ_SECONDS:-60}" -max_len=65536 \
    -timeout=10 -rss_limit_mb=1024 -dict=tests/fuzz/yaml.dict -artifact_prefix=build/fuzz/ \
    "$corpus" tests/fuzz/corpus examples/services/v1 examples/services/v2 >build/fuzz/fuzz.log 2>&1 ||
    { tail -n 60 build/fuzz/fuzz.log; echo "fuzz: crash; reproducer in build/fuzz/"; exit 1; }
tail -n 2 build/fuzz/fuzz.log
echo "fuzz: no crash"
