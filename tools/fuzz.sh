#!/usr/bin/env bash
# Fuzz the experiment loader (YAML text -> Config -> compose_experiment, tests/fuzz/) with
# libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer.
#   bash tools/fuzz.sh [SECONDS] [BUILD_DIR]      (default 70 s, build-fuzz)
# Fails on a crash, a sanitizer report, an input that takes over 10 s or an exception other
# than diffusion::Error; the input is kept in BUILD_DIR/fuzz-artifacts/ (reproduce with
# `BUILD_DIR/bin/fuzz_config FILE`) and should become a test in
# tests/core/test_config_fuzz_regressions.cpp once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-70}
build=${2:-build-fuzz}

# libFuzzer comes with clang, so this is a separate clang build of the project; everything in
# it (core and plugins too) is instrumented for coverage and sanitizers. Tests and tools are not
# needed: the harness loads the plugins from this build's plugin folder.
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DDIFFUSION_SANITIZE=address,undefined -DDIFFUSION_FUZZ=ON \
  -DDIFFUSION_BUILD_TESTS=OFF -DDIFFUSION_BUILD_TOOLS=OFF
cmake --build "$build" -j"$(nproc)"

# New inputs go to a scratch corpus; the seeds (tests/fuzz/corpus, experiments/) are only read.
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
mkdir -p "$build/fuzz-artifacts"
export UBSAN_OPTIONS=print_stacktrace=1
# llvm-14 installs its symbolizer only under a versioned name; reports need it for line numbers.
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
"$build/bin/fuzz_config" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$build/fuzz-artifacts/" "$corpus" tests/fuzz/corpus experiments
