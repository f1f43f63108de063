#!/usr/bin/env bash
# Runs every benchmark of bench/ and prints their tables (make bench).
set -euo pipefail
build=${CTRIO_BUILD_DIR:-build}
"$build/bench/bench_core"
