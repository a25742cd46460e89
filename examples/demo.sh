#!/usr/bin/env bash
# The main job on the shipped examples: install what is missing, build rolld,
# validate the example services and plan the change from v1 to v2.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "== rolld validate examples/services/v1 examples/services/v2"
build/rolld validate examples/services/v1 examples/services/v2
echo
echo "== rolld plan examples/services/v2 --against examples/services/v1"
build/rolld plan examples/services/v2 --against examples/services/v1
echo
echo "== rolld validate examples/services/invalid   (a spec with deliberate mistakes)"
build/rolld validate examples/services/invalid || true
